"""`make demo` / `shopwise local up`: the whole path on one machine, stage by stage, then serve until Ctrl-C."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise_local.console import examples_from
from shopwise_local.importer import import_events, import_items
from shopwise_local.movielens import convert
from shopwise_local.paths import state_dir
from shopwise_local.pipeline import run_pipeline
from shopwise_local.replay import replay
from shopwise_local.simulate import demo_dataset
from shopwise_local.stack import LocalStack
from shopwise_local.store_backend import call, shopper_token

STAGES = [
    "start local AWS endpoint",
    "create tables, stream, buckets, queue",
    "prepare the data set (a simulated store, or MovieLens)",
    "import catalog",
    "import history into the event archive",
    "start HTTP API and stream poller",
    "replay recent events: POST /v1/events -> Kinesis -> update_features",
    "export catalog",
    "train",
    "gate",
    "batch transform",
    "load",
    "promote",
    "check the API",
]


@dataclass
class DemoOptions:
    aws_port: int = 4566
    api_port: int = 8080
    dataset: Path | None = None  # None: the synthetic store; else a MovieLens latest-small folder
    replay_days: float = 60.0
    serve: bool = True
    progress: bool = True
    # run against the demo's stack once every stage is done, before serving or stopping (tests build on a full demo)
    after: Callable[[LocalStack, dict[str, Any]], None] | None = None


class Stages:
    """Numbered stages with their wall-clock time; ``begin`` ends the open stage, if any."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.number = 0
        self._open: tuple[str, float] | None = None

    def begin(self, name: str) -> None:
        self.end()
        self.number += 1
        print(f"[{self.number:2d}/{len(STAGES)}] {name} ...", flush=True)
        self._open = (name, time.perf_counter())

    def end(self) -> None:
        if self._open:
            name, started = self._open
            self.timings[name] = time.perf_counter() - started
            print(f"        done in {self.timings[name]:.1f}s", flush=True)
            self._open = None

    @contextmanager
    def run(self, name: str) -> Iterator[None]:
        self.begin(name)
        yield
        self.end()


def _browser(api_url: str, method: str, path: str, token: str, body: Any = None) -> Any:
    """A call as the shopper's browser does it, with its token; the answer, or an error saying what went wrong."""
    status, answer = call(api_url, method, path, body, token=token, timeout=10)
    if status >= 300:
        raise RuntimeError(f"{method} {path} answered {status}: {answer}")
    return answer


def _view_then_ask(api_url: str, user: str, token: str, item: str, wait_s: float = 15.0) -> dict[str, Any]:
    """The real-time path: a product view from the shopper's browser through the API and the stream, then the
    shopper's product-page list, asked until the view has reached the shopper's serving view."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {"event_id": f"demo-view-{time.time_ns()}", "event_type": "product_view", "occurred_at": now}
    _browser(api_url, "POST", "/v1/events", token, {"events": [{**event, "customer_id": user, "item_id": item}]})
    deadline = time.monotonic() + wait_s
    while True:
        answer = _browser(api_url, "GET", f"/v1/users/{user}/recommendations?n=5&placement=product", token)
        if "realtime" in answer["sources"] or time.monotonic() > deadline:
            return dict(answer)
        time.sleep(0.2)


def run_demo(options: DemoOptions) -> dict[str, Any]:
    state = state_dir()
    work = state / "demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stack = LocalStack(state, options.aws_port, options.api_port)
    stages = Stages()
    # Ctrl-C arrives as KeyboardInterrupt in this thread (even when started in the background, where SIGINT
    # would otherwise be ignored); SIGTERM is treated the same way
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with stages.run(STAGES[0]):
            stack.start_endpoint()
            print(
                f"        AWS endpoint: {stack.endpoint.url} (moto, on kept-alive connections; log {stack.endpoint.log_path})"
            )
        with stages.run(STAGES[1]):
            resources = stack.create_resources()
            print(f"        tables: {', '.join(resources.tables.values())}; stream: {resources.stream}")
        with stages.run(STAGES[2]):
            if options.dataset is None:
                data = demo_dataset(work / "data", progress=options.progress)
                print(f"        simulated store: {work / 'data'} (truth.json says how it was drawn)")
            else:
                data = convert(options.dataset, work / "data", replay_days=options.replay_days)
            print(
                f"        {data.items_count} items, {data.history_count} history events, "
                f"{data.replay_count} recent events to replay"
            )
        with stages.run(STAGES[3]):
            report = import_items(data.items, resources.tables["items"], resources.tables["features"], options.progress)
            print("        " + report.summary().replace("\n", "\n        "))
        with stages.run(STAGES[4]):
            pseudonymiser = load_pseudonymiser(resources.pseudonym_key_secret)
            report = import_events(data.history, resources.archive_bucket, pseudonymiser, options.progress)
            print("        " + report.summary().replace("\n", "\n        "))
        with stages.run(STAGES[5]):
            api_url = stack.start_functions()
            assert stack.api and stack.api.console
            stack.api.console.target.examples = examples_from(data.replay)  # the store's ids: the stack has none
            print(f"        API: {api_url}; console: {api_url}/")
        with stages.run(STAGES[6]):
            sent = replay(api_url, data.replay, progress=options.progress, grant_consent=True)
            assert stack.poller
            if not stack.poller.wait_idle(timeout=300):
                raise RuntimeError("the stream poller did not catch up within 5 minutes")
            stats = stack.poller.stats
            print(
                f"        {sent.accepted} accepted, {sent.rejected} rejected in {sent.requests} requests; "
                f"poller read {stats.records_read} records in {stats.invocations} invocations, "
                f"{stats.records_failed_to_destination} to the failure queue, {stats.archived_objects} archive objects"
            )
            for reason in sent.reasons[:5]:
                print(f"        rejected: {reason}")

        result = run_pipeline(
            resources.archive_bucket,
            resources.artifacts_bucket,
            work / "sagemaker",
            # MovieLens has no consent records: its ratings count as consenting (the simulated store has them)
            hyperparameters={"consent": "assumed"} if options.dataset else None,
            load_function=stack.functions["load"],
            registry_function=stack.functions["registry"],
            export_function=stack.functions["export_catalog"],
            log=_job_line,
            stage=stages.begin,
        )
        print(
            f"        {result.rows_loaded} rows imported into the slot table, served as model version {result.model_version}"
        )
        stages.end()

        with stages.run(STAGES[-1]):
            known_user = _first_user(data.replay)
            token = shopper_token(customer=known_user)  # what the store's backend hands the shopper's browser
            personal = _browser(api_url, "GET", f"/v1/users/{known_user}/recommendations?n=5", token)
            visitor = _browser(api_url, "POST", "/v1/visitors", "")  # a new visitor: an id and a token from the API
            path = f"/v1/users/{visitor['visitor_id']}/recommendations?n=5&id_type=anonymous"
            unknown = _browser(api_url, "GET", path, visitor["token"])
            print(f"        user {known_user}: {personal['source']}, first: {personal['items'][0]}")
            print(f"        unknown user: {unknown['source']}, first: {unknown['items'][0]}")
            viewed = personal["items"][-1]["item_id"]
            after = _view_then_ask(api_url, known_user, token, viewed)
            live = [i for i in after["items"] if i["reason"]["code"] in ("because_viewed", "next_after_viewed")]
            print(
                f"        user {known_user} views item {viewed}, then on a product page: sources "
                f"{' > '.join(after['sources'])}; {len(live)} of 5 items because of that view"
                + (f' ("{live[0]["reason"]["text"]}")' if live else "")
            )

        summary = {
            "timings_s": {k: round(v, 2) for k, v in stages.timings.items()},
            "total_s": round(sum(stages.timings.values()), 2),
            "model_version": result.model_version,
            "metrics": _headline(result.metrics),
            "api_url": api_url,
            "known_user": known_user,
            "known_item": personal["items"][0]["item_id"],
        }
        (state / "demo-summary.json").write_text(json.dumps(summary, indent=2))
        _print_summary(summary, api_url, known_user)
        if options.after is not None:
            options.after(stack, summary)
        if options.serve:
            print("\nServing. Press Ctrl-C to stop everything this started.", flush=True)
            while True:
                time.sleep(3600)
        return summary
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return {}
    finally:
        stack.close()


def _job_line(line: str) -> None:
    """Show the job log lines a person wants to see during the demo (the full logs are in the job folders)."""
    if line.startswith(("data:", "selected", "metric ndcg@10", "metric recall@20", "channel", "transform input")) or (
        "rows ->" in line
    ):
        print(f"        | {line}", flush=True)


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The selected model and its test figures, from the training job's metrics.json."""
    test = metrics["models"][metrics["selected"]]["test"] or {}
    return {
        "selected": metrics["selected"],
        "summary": metrics["summary"],
        "split": metrics["split"],
        **{k: round(test[k], 4) for k in ("ndcg@10", "recall@10", "recall@20", "coverage@10") if k in test},
    }


def _first_user(replay_csv: Path) -> str:
    """The first logged-in shopper of the replay: the API's default id type is a customer id."""
    with replay_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("id_type", "customer") == "customer":
                return row["user_id"]
    raise RuntimeError(f"{replay_csv} has no logged-in shopper to show")


def _print_summary(summary: dict[str, Any], api_url: str, user: str) -> None:
    print("\nStage timings:")
    for name, seconds in summary["timings_s"].items():
        print(f"  {seconds:7.1f}s  {name}")
    print(f"  {summary['total_s']:7.1f}s  total")
    m = summary["metrics"]
    print(
        f"\nModel {summary['model_version']}: {m['summary']}; test ({m['split']['protocol']}, "
        f"{m['split']['test_users']} users) ndcg@10 {m.get('ndcg@10', 0):.4f}, recall@20 {m.get('recall@20', 0):.4f}"
    )
    print("\nTry it (a shopper's browser carries a token its store's backend minted; the store's servers sign):")
    print(f"  TOKEN=$(.venv/bin/shopwise token --customer {user})")
    print(f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{api_url}/v1/users/{user}/recommendations?n=5'")
    print(
        f"  curl -s -X POST -H \"Authorization: Bearer $TOKEN\" '{api_url}/v1/events' "
        "-H 'Content-Type: application/json' -d "
        f'\'{{"events":[{{"event_id":"e1","event_type":"product_view","occurred_at":"{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}",'
        f'"customer_id":"{user}","item_id":"{summary["known_item"]}"}}]}}\''
    )
    print(f"  curl -s -X POST '{api_url}/v1/visitors'   # a new visitor's id and token")
    print(
        f"  curl -s --aws-sigv4 'aws:amz:us-east-1:execute-api' --user local:local "
        f"'{api_url}/v1/server/users/{user}/recommendations?n=5'   # as the store's servers"
    )
    print(f"  curl -s '{api_url}/v1/items/{summary['known_item']}/similar?n=5'")
    print(f"  curl -s '{api_url}/v1/openapi.json'")
    print(f"\nThe console (this machine only): open {api_url}/ and pick shopper {user}")
