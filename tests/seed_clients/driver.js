// Runs the seed's ServiceAuthClient (service_auth_client.js, unchanged) for tests/seed_clients.rs
// and prints one JSON line with what it saw. Usage: node driver.js '<json>' where the JSON is
// {op: "flow" | "token", authServiceUrl, clientId, clientSecret, scopes, serviceUrl}.
//
// "flow": getAccessToken twice, validateToken (by a receiving client built as the seed builds
// it), callService; "token": getAccessToken once, reporting the HTTP error it threw.
// Token requests are counted by wrapping axios.post, the function the class calls.
'use strict';

const axios = require('axios');
const ServiceAuthClient = require('./service_auth_client');

let tokenRequests = 0;
const post = axios.post;
axios.post = function countingPost(...args) {
  tokenRequests += 1;
  return post.apply(this, args);
};

function httpError(error) {
  return {
    ok: false,
    message: error.message,
    status: error.response ? error.response.status : null,
    headers: error.response ? error.response.headers : null,
    body: error.response ? error.response.data : null,
  };
}

async function main() {
  const args = JSON.parse(process.argv[2]);
  const client = new ServiceAuthClient({
    authServiceUrl: args.authServiceUrl,
    clientId: args.clientId,
    clientSecret: args.clientSecret,
    scopes: args.scopes,
  });
  if (args.op === 'token') {
    try {
      await client.getAccessToken();
      return { ok: true, tokenRequests };
    } catch (error) {
      return httpError(error);
    }
  }
  const first = await client.getAccessToken();
  const second = await client.getAccessToken();
  const receivingService = new ServiceAuthClient({ authServiceUrl: args.authServiceUrl });
  const validation = await receivingService.validateToken(first);
  const tampered = await receivingService.validateToken(first.slice(0, -4) + (first.endsWith('AAAA') ? 'BBBB' : 'AAAA'));
  const workflows = await client.callService(args.serviceUrl, { method: 'GET' });
  return {
    ok: true,
    token: first,
    sameToken: first === second,
    tokenRequests,
    validation,
    tampered,
    workflows,
  };
}

main().then(
  (result) => console.log(JSON.stringify(result)),
  (error) => {
    console.log(JSON.stringify(httpError(error)));
    process.exitCode = 1;
  },
);
