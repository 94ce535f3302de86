// The interop peer: panva's oidc-provider (a third-party, OpenID-certified authorization server)
// configured for the client credentials grant with JWT access tokens.
//
//   node peer.mjs --state DIR [--config peer.config.json] [--port 0] [--rotate]
//
// Keys live in the state directory and are generated there when missing:
//   signing-keys.json  the provider's private JWKS (an ES256 and an RS256 key; the first key of
//                      each algorithm signs, the others stay published in jwks_uri)
//   client-key.pem     PKCS#8 private key (P-256) of the private_key_jwt client; the provider is
//                      given its public JWK
// --rotate puts a new ES256 and a new RS256 key in front of the existing ones before starting:
// new tokens carry the new kids, the old keys stay published so their tokens keep verifying.
//
// Listens on 127.0.0.1 (port 0: a free port) and prints `listening on http://127.0.0.1:PORT` on
// stdout once it accepts requests; that URL is the issuer. Stops on SIGTERM/SIGINT or when stdin
// closes (so it never outlives the test that started it).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    config: { type: 'string', default: new URL('./peer.config.json', import.meta.url).pathname },
    state: { type: 'string' },
    port: { type: 'string', default: '0' },
    rotate: { type: 'boolean', default: false },
  },
});
if (!args.state) {
  console.error('usage: node peer.mjs --state DIR [--config FILE] [--port N] [--rotate]');
  process.exit(2);
}

const config = JSON.parse(fs.readFileSync(args.config, 'utf8'));
fs.mkdirSync(args.state, { recursive: true });

// ---- keys -------------------------------------------------------------------------------------

function newSigningKey(alg) {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

function writeFileAtomic(file, contents, mode = 0o600) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, contents, { mode });
  fs.renameSync(tmp, file);
}

const signingKeysFile = path.join(args.state, 'signing-keys.json');
let signingKeys = fs.existsSync(signingKeysFile)
  ? JSON.parse(fs.readFileSync(signingKeysFile, 'utf8')).keys
  : [];
if (signingKeys.length === 0 || args.rotate) {
  signingKeys = [newSigningKey('ES256'), newSigningKey('RS256'), ...signingKeys];
  writeFileAtomic(signingKeysFile, JSON.stringify({ keys: signingKeys }, null, 2));
}

const clientKeyFile = path.join(args.state, 'client-key.pem');
if (!fs.existsSync(clientKeyFile)) {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileAtomic(clientKeyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
}
const clientPublicJwk = {
  ...crypto.createPublicKey(fs.readFileSync(clientKeyFile)).export({ format: 'jwk' }),
  alg: 'ES256',
  use: 'sig',
};

// ---- storage: the provider's state lives in this process (a token issued before a restart
// stays valid because it is a self-contained JWT) -----------------------------------------------

const store = new Map();
class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    for (const [key, entry] of store) {
      if (key.startsWith(`${this.model}:`) && entry.payload.uid === uid) return entry.payload;
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [key, entry] of store) {
      if (key.startsWith(`${this.model}:`) && entry.payload.userCode === userCode) {
        return entry.payload;
      }
    }
    return undefined;
  }

  async consume(id) {
    const payload = await this.find(id);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.payload.grantId === grantId) store.delete(key);
    }
  }
}

// ---- the provider ---------------------------------------------------------------------------

const resources = config.resources;

const providerConfiguration = {
  adapter: MemoryAdapter,
  jwks: { keys: signingKeys },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: config.scopes,
  clients: config.clients.map((client) => ({
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    ...client,
    ...(client.token_endpoint_auth_method === 'private_key_jwt'
      ? { jwks: { keys: [clientPublicJwk] } }
      : {}),
  })),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.defaultResource,
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, resourceIndicator) {
        const resource = resources[resourceIndicator];
        if (!resource) throw new errors.InvalidTarget();
        return {
          scope: resource.scope,
          audience: resourceIndicator,
          accessTokenTTL: resource.ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: resource.alg } },
        };
      },
    },
  },
  formats: {
    customizers: {
      // A resource may list extra audiences: its tokens then carry `aud` as an array.
      jwt(ctx, token, jwt) {
        const extra = resources[token.resourceServer?.identifier()]?.extraAudiences;
        if (extra?.length) jwt.payload.aud = [jwt.payload.aud, ...extra];
      },
    },
  },
  ttl: {
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300,
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300,
  },
  clockTolerance: 5,
};

const server = http.createServer();
server.on('error', (err) => {
  console.error(`peer: cannot listen on 127.0.0.1:${args.port}: ${err.message}`);
  process.exit(1);
});
server.listen(Number(args.port), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, providerConfiguration);
  provider.on('server_error', (ctx, err) => console.error('peer: server_error', err));
  // One `peer-event {json}` line on stdout per token, JWKS or discovery request, so that the suite can
  // count fetches and see which client authentication method reached the server (oidc-provider
  // itself accepts client_secret_basic and client_secret_post interchangeably).
  provider.use(async (ctx, next) => {
    await next();
    const route = ctx.oidc?.route;
    if (route !== 'token' && route !== 'jwks' && route !== 'discovery') return;
    const event = { route, status: ctx.status };
    if (route === 'token') {
      const params = ctx.oidc.params ?? {};
      event.client_id = ctx.oidc.client?.clientId ?? params.client_id;
      if (/^basic /i.test(ctx.get('authorization'))) event.auth = 'client_secret_basic';
      else if (params.client_assertion) event.auth = 'private_key_jwt';
      else if (params.client_secret) event.auth = 'client_secret_post';
      else event.auth = 'none';
      event.scope = params.scope;
      event.resource = params.resource;
      event.error = ctx.body?.error;
    }
    console.log(`peer-event ${JSON.stringify(event)}`);
  });
  const callback = provider.callback();
  server.on('request', (req, res) => {
    // `/__peer/marker?n=ID` prints `peer-marker ID` and answers 204: once the suite reads that
    // line, every event of the requests answered before it has been read too.
    if (req.url.startsWith('/__peer/marker')) {
      const id = new URL(req.url, issuer).searchParams.get('n');
      console.log(`peer-marker ${id}`);
      res.writeHead(204).end();
      return;
    }
    callback(req, res);
  });
  const kids = signingKeys.map((k) => k.kid).join(' ');
  console.log(`signing keys (first of each alg signs): ${kids}`);
  console.log(`listening on ${issuer}`);
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.resume();
