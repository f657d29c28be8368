"""The HTTP API on localhost: each request becomes an API Gateway HTTP API (payload v2) event for the same
handler the stack routes it to (routes as in ``shopwise_cdk.serving`` / ``shopwise_cdk.ingestion``)."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from shopwise.access.callers import origin_allowed
from shopwise.access.routes import match
from shopwise.config import CORS_HEADERS, CORS_MAX_AGE, CORS_METHODS
from shopwise_local.console import Console
from shopwise_local.lambda_runtime import LocalFunction, http_api_event
from shopwise_local.sigv4 import verify

MAX_BODY = 6 * 1024 * 1024  # API Gateway -> Lambda payload limit


class Routes:
    """The stack's route table (``shopwise.access.routes``, which ``shopwise_cdk.serving`` builds the HTTP API from):
    each route goes to its function. The server and admin routes are IAM-authorised (in the stack by API Gateway,
    here by the same signature check), and say so."""

    def __init__(self, functions: Mapping[str, LocalFunction]) -> None:
        self.functions = dict(functions)

    def match(self, method: str, path: str) -> tuple[LocalFunction, str, bool] | None:
        """The function, the route key and whether IAM authorises the route (signed requests only)."""
        route = match(method, path)
        if route is None:
            return None
        return self.functions[route.function], route.key, route.iam


def _cors_headers(origin: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """What API Gateway's CORS configuration adds for an allowed origin (nothing for another one)."""
    if not origin or not origin_allowed(origin, allowed):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _handler_class(routes: Routes, allowed_origins: tuple[str, ...], api: LocalHttpApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "shopwise-local"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo prints its own progress
            pass

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The server's own refusals, before any route (a request line over 64 KB: 414, a malformed request:
            400), answered as API Gateway answers: JSON with a message, not the standard library's HTML page."""
            self.close_connection = True
            body = json.dumps({"message": message or HTTPStatus(code).phrase}).encode()
            self.send_response(code, message)
            self.send_header("Connection", "close")
            self._send_body(body, {"Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self._send_body(body, headers)

        def _send_body(self, body: bytes, headers: dict[str, str]) -> None:
            origin = self.headers.get("Origin", "") if getattr(self, "headers", None) else ""
            headers = {**headers, **_cors_headers(origin, allowed_origins)}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, b'{"message":"Request too long"}', {"Content-Type": "application/json"})
                return
            body = self.rfile.read(length) if length else None
            if api.console is not None and (url.path == "/" or url.path.startswith("/console")):
                # the operator's console (local only: no route of the stack's API serves it)
                status, headers, page = api.console.handle(
                    method, url.path, url.query, dict(self.headers.items()), body
                )
                self._send(status, page, headers)
                return
            route = routes.match(method, url.path)
            if route is None:
                self._send(404, b'{"message":"Not Found"}', {"Content-Type": "application/json"})
                return
            function, route_key, admin = route
            caller = ""
            if admin:
                where = f"http://{self.headers.get('Host') or '127.0.0.1'}{self.path}"
                problem = verify(method, where, dict(self.headers.items()), body)
                if problem:  # API Gateway answers 403 {"message": "Forbidden"}; locally it says why
                    payload = json.dumps({"message": f"Forbidden: {problem}"}).encode()
                    self._send(403, payload, {"Content-Type": "application/json"})
                    return
                caller = os.environ.get("AWS_ACCESS_KEY_ID", "")
            event = http_api_event(
                method,
                url.path,
                url.query,
                dict(self.headers.items()),
                body,
                self.client_address[0],
                route_key,
                caller,
            )
            try:
                result = function.invoke(event)
            except Exception:  # what API Gateway answers when the integration fails
                self._send(500, b'{"message":"Internal Server Error"}', {"Content-Type": "application/json"})
                raise
            if not isinstance(result, dict) or "statusCode" not in result:
                payload = json.dumps(result).encode()
                self._send(200, payload, {"Content-Type": "application/json"})
                return
            raw = result.get("body") or ""
            data = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
            headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
            for key, values in (result.get("multiValueHeaders") or {}).items():
                headers[key] = ",".join(str(v) for v in values)
            self._send(int(result["statusCode"]), data, headers)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def do_OPTIONS(self) -> None:
            """A CORS preflight, answered as API Gateway does from the CORS configuration (the functions never see
            it): the methods and headers a browser may use, for an allowed origin."""
            headers = {"Content-Type": "application/json"}
            if _cors_headers(self.headers.get("Origin", ""), allowed_origins):
                headers.update(
                    {
                        "Access-Control-Allow-Methods": ", ".join(CORS_METHODS),
                        "Access-Control-Allow-Headers": ", ".join(CORS_HEADERS),
                        "Access-Control-Max-Age": str(CORS_MAX_AGE),
                    }
                )
            self._send(204, b"", headers)

    return Handler


class LocalHttpApi:
    def __init__(
        self, routes: Routes, port: int, host: str = "127.0.0.1", allowed_origins: tuple[str, ...] = ()
    ) -> None:
        self.console: Console | None = None  # mounted at / by the local stack (shopwise_local.console)
        self.server = ThreadingHTTPServer((host, port), _handler_class(routes, allowed_origins, self))
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-api", daemon=True)

    def start(self) -> LocalHttpApi:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
