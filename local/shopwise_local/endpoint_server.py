"""The local endpoint's server: moto's WSGI application (the one ``python -m moto.server`` serves) behind waitress, a
WSGI server that keeps HTTP/1.1 connections open between requests, as AWS's endpoints do.

Why: moto's own server is werkzeug's development server, which closes every connection after its answer, so each
call a local function made paid a TCP connect and close (and the server a new thread) that a function in AWS, whose
clients keep their connections (``shopwise.dal.wire``'s pool, urllib3's under boto3), does not. A py-spy profile of
``tests/bench/bench_update.py --events 10000 --no-baseline`` (``py-spy record --gil``) put about 8% of the updater's
samples in those connects and closes.

    python -m shopwise_local.endpoint_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import argparse
import logging
import os

from moto.server import DomainDispatcherApplication, create_backend_app
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser

# requests served at once: a long poll (SQS ReceiveMessage's wait) holds one for its wait; kept-alive connections
# between requests hold none
THREADS = 64
CONNECTIONS = 2_000  # open at once, idle or not: each local function's pools keep theirs
IDLE_SECONDS = 300  # an idle connection closed after this (clients reconnect, as they do when AWS closes one)


class BodilessContinueParser(HTTPRequestParser):
    """Waitress's request parser, except that a request with no body does not expect a 100 Continue. boto3 sends
    ``Expect: 100-continue`` on every S3 PUT, an empty object's too (``Content-Length: 0``); waitress answers 100
    Continue and then marks the request, complete since its headers, as waiting for a body that never comes: the
    call hangs until the client's read timeout."""

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if not self.chunked and not self.content_length:
            self.expect_continue = False


class Channel(HTTPChannel):
    parser_class = BodilessContinueParser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto's server sets it: queue URLs and the like name it
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto's server runs it
    server = create_server(
        app,
        host=args.host,
        port=args.port,
        threads=THREADS,
        connection_limit=CONNECTIONS,
        channel_timeout=IDLE_SECONDS,
        ident="shopwise-local",
    )
    server.channel_class = Channel  # type: ignore[union-attr]  # one listening socket: a server with this attribute
    server.run()


if __name__ == "__main__":
    main()
