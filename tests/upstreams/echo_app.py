"""WSGI app for tests/gateway_upstreams.rs: answers every request with what the WSGI server
made of it, as JSON: the method, the path, the URL scheme and every HTTP_* variable of the
environ (the request headers as a CGI-style application reads them)."""

import json


def app(environ, start_response):
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "scheme": environ.get("wsgi.url_scheme", ""),
        "remote_addr": environ.get("REMOTE_ADDR", ""),
        "environ": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
    }
    body = json.dumps(seen, sort_keys=True).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
