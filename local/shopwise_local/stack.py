"""The local stack: endpoint, resources, functions, the stream poller and the HTTP API, started and stopped
together; its coordinates are written to ``<state>/stack.json`` so other commands can attach to it."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shopwise import config
from shopwise.access.routes import ROUTES
from shopwise.settings import get_settings
from shopwise_local.console import Console, ConsoleTarget
from shopwise_local.endpoint import LocalEndpoint, use_endpoint
from shopwise_local.http_api import LocalHttpApi, Routes
from shopwise_local.lambda_runtime import LocalFunction
from shopwise_local.logs import LogSubscription
from shopwise_local.poller import KinesisPoller
from shopwise_local.resources import LocalResources, create_resources
from shopwise_local.target import register_local

QUIET_POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "shopwise",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_DEV": "false",
}


@dataclass(frozen=True)
class StackInfo:
    endpoint_url: str
    api_url: str
    function_environment: dict[str, str]
    failure_queue_url: str
    pid: int

    def save(self, state: Path) -> Path:
        path = state / "stack.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def attach(cls, state: Path) -> StackInfo:
        """Find a running local stack and point this process at it."""
        path = state / "stack.json"
        if not path.exists():
            raise RuntimeError("no local stack is running: start one with `make demo` or `shopwise local up`")
        info = cls(**json.loads(path.read_text()))
        try:
            urllib.request.urlopen(f"{info.endpoint_url}/moto-api/", timeout=2).close()
        except OSError:
            raise RuntimeError(
                f"the local stack in {path} does not answer at {info.endpoint_url}: "
                "start one with `make demo` or `shopwise local up`"
            ) from None
        use_endpoint(info.endpoint_url)
        os.environ.update(info.function_environment)
        get_settings.cache_clear()
        return info


class LocalStack:
    def __init__(self, state: Path, aws_port: int, api_port: int) -> None:
        self.state = state
        self.endpoint = LocalEndpoint(aws_port, state / "moto.log")
        self.api_port = api_port
        self.resources: LocalResources | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.poller: KinesisPoller | None = None
        self.api: LocalHttpApi | None = None
        self.impressions: LogSubscription | None = None

    def start_endpoint(self) -> None:
        self.endpoint.start()
        use_endpoint(self.endpoint.url)

    def create_resources(self) -> LocalResources:
        self.resources = create_resources("local")
        os.environ.update(self.resources.function_environment())
        os.environ.update({k: v for k, v in QUIET_POWERTOOLS.items() if k not in os.environ})
        get_settings.cache_clear()
        return self.resources

    def start_functions(self) -> str:
        assert self.resources, "create resources first"
        self.impressions = LogSubscription(self.resources.archive_bucket).start()
        for name in (
            "collect",
            "update_features",
            "export_catalog",
            "load",
            "registry",
            "drift",
            "serve",
            "catalog",
            "campaigns",
            "privacy",
            "purge",
        ):
            self.functions[name] = LocalFunction(name, subscription=self.impressions if name == "serve" else None)
        self.poller = KinesisPoller(
            self.resources.stream,
            self.functions["update_features"],
            self.resources.archive_bucket,
            self.resources.failure_queue_url,
            config.environment("local"),
        ).start()
        self.api = LocalHttpApi(
            Routes({route.function: self.functions[route.function] for route in ROUTES}),
            self.api_port,
            allowed_origins=self.resources.env.allowed_origins,
        ).start()
        name = self.resources.env.physical_name("").rstrip("-")
        self.api.console = Console(ConsoleTarget(name, self.resources.env.name, self.api.url))
        # the same coordinates as a CloudFormation stack: `shopwise --stack shopwise-local` resolves them as it
        # resolves a deployed stack
        register_local(
            name,
            self.resources.env.name,
            self.resources.function_environment(),
            self.api.url,
        )
        StackInfo(
            endpoint_url=self.endpoint.url,
            api_url=self.api.url,
            function_environment=self.resources.function_environment(),
            failure_queue_url=self.resources.failure_queue_url,
            pid=os.getpid(),
        ).save(self.state)
        return self.api.url

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        return self.functions[name].invoke(event)

    def close(self) -> None:
        (self.state / "stack.json").unlink(missing_ok=True)
        if self.api:
            self.api.close()
        if self.poller:
            self.poller.stop()
        try:
            if self.impressions:
                self.impressions.stop()
        finally:
            self.endpoint.close()


@contextmanager
def scratch_stack() -> Iterator[LocalResources]:
    """A local stack of its own for a benchmark — a fresh state folder (``SHOPWISE_HOME``), its endpoint (moto
    server, its own process) and its resources, no functions or API — stopped when the block ends."""
    from shopwise_local.endpoint import free_port

    state = Path(tempfile.mkdtemp(prefix="shopwise-bench-"))
    os.environ["SHOPWISE_HOME"] = str(state)
    stack = LocalStack(state, free_port(), free_port())
    try:
        stack.start_endpoint()
        yield stack.create_resources()
    finally:
        stack.close()
