"""Runs the seed's ServiceAuthClient (service_auth_client.py, unchanged) for
tests/seed_clients.rs and prints one JSON line with what it saw.

Usage: python driver.py '<json>' where the JSON is
{op: "flow" | "token", authServiceUrl, clientId, clientSecret, scopes, serviceUrl}.

"flow": get_access_token twice, validate_token (by a receiving client built as the seed builds
it), call_service; "token": get_access_token once, reporting the HTTP error it raised.
Token requests are counted by wrapping requests.post, the function the class calls.
"""

import json
import sys

import requests

from service_auth_client import ServiceAuthClient

token_requests = 0
_post = requests.post


def counting_post(*args, **kwargs):
    global token_requests
    token_requests += 1
    return _post(*args, **kwargs)


requests.post = counting_post


def http_error(error):
    response = getattr(error, "response", None)
    body = None
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            body = response.text
    return {
        "ok": False,
        "message": str(error),
        "status": response.status_code if response is not None else None,
        "headers": dict(response.headers) if response is not None else None,
        "body": body,
    }


def main():
    args = json.loads(sys.argv[1])
    client = ServiceAuthClient(
        auth_service_url=args["authServiceUrl"],
        client_id=args["clientId"],
        client_secret=args["clientSecret"],
        scopes=args["scopes"],
    )
    if args["op"] == "token":
        try:
            client.get_access_token()
            return {"ok": True, "tokenRequests": token_requests}
        except requests.HTTPError as error:
            return http_error(error)
    first = client.get_access_token()
    second = client.get_access_token()
    receiving_service = ServiceAuthClient(auth_service_url=args["authServiceUrl"])
    validation = receiving_service.validate_token(first)
    tampered_token = first[:-4] + ("BBBB" if first.endswith("AAAA") else "AAAA")
    tampered = receiving_service.validate_token(tampered_token)
    workflows = client.call_service(url=args["serviceUrl"])
    return {
        "ok": True,
        "token": first,
        "sameToken": first == second,
        "tokenRequests": token_requests,
        "validation": validation,
        "tampered": tampered,
        "workflows": workflows,
    }


if __name__ == "__main__":
    try:
        print(json.dumps(main()))
    except requests.HTTPError as error:
        print(json.dumps(http_error(error)))
        sys.exit(1)
