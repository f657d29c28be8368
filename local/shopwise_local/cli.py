"""`shopwise`: the command line for local runs and operations — of the running local stack, or with `--stack NAME`
of a deployed one (``shopwise_local.target``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from shopwise.keys import ID_TYPES
from shopwise_local.paths import SHARED_DATA, state_dir

_STACK: str | None = None  # --stack: a deployed stack's name; None: the running local stack


def _attach() -> Any:
    """The stack the command acts on (``shopwise_local.target``): the running local one, or ``--stack NAME``."""
    from shopwise_local.target import attach

    return attach(_STACK, state_dir())


def _deployed(target: Any, kind: str, payload: dict[str, Any]) -> int:
    """Start one of a deployed stack's state machines and follow it to the end, printing each state as it goes."""
    from shopwise.dal.stacks import run_state_machine

    arn = target.state_machines.get(kind)
    if not arn:
        raise RuntimeError(f"stack {target.name} has no {kind} state machine output")
    status, output = run_state_machine(arn, payload, lambda line: print(line, flush=True))
    print(json.dumps({"status": status, "output": output}, indent=2, default=str))
    return 0 if status == "SUCCEEDED" else 1


def cmd_local_up(args: argparse.Namespace) -> int:
    from shopwise_local.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            aws_port=args.aws_port,
            api_port=args.port,
            dataset=args.dataset,
            replay_days=args.replay_days,
            serve=not args.no_serve,
            progress=not args.no_progress,
        )
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Upload the file and import it in the stack: the import function or the import job (by size), followed with
    a progress bar (``shopwise_local.imports``); then the backfill of imported events into the feature store."""
    import tempfile

    from shopwise.settings import get_settings
    from shopwise_local.imports import ImportFailed, deployed_runner, import_to_stack, local_runner

    if not args.file.exists():
        print(f"error: {args.file} does not exist", file=sys.stderr)
        return 2
    target = _attach()
    settings = get_settings()
    with tempfile.TemporaryDirectory() as tmp:
        if target.deployed:
            machine = target.state_machines.get("import")
            if not machine:
                raise RuntimeError(
                    f"stack {target.name} has no ImportStateMachine output: deployed by an older version?"
                )
            runner = lambda _route: deployed_runner(machine, lambda line: print(line, file=sys.stderr))  # noqa: E731
        else:
            runner = lambda route: local_runner(route, Path(tmp))  # noqa: E731
        try:
            done = import_to_stack(args.kind, args.file, runner, args.via, progress=not args.no_progress)
        except ImportFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    report = done.report
    if args.json:
        print(json.dumps({"import_id": done.import_id, "route": done.route, "errors_uri": done.errors_uri,
                          "seconds": round(done.seconds, 1), **report.to_json()}, indent=2))  # fmt: skip
    else:
        print(report.summary(limit=args.show_bad))
        print(f"import {done.import_id} by the {done.route} in {done.seconds:.1f} s; every bad row: {done.errors_uri}")
    if args.kind == "events" and report.keys and not args.no_backfill:
        from shopwise.ingestion.backfill import backfill

        print(backfill(settings, report.keys, progress=not args.no_progress).summary())
    return 0 if report.imported else 1


def cmd_backfill(args: argparse.Namespace) -> int:
    """Fold imported history (the importer's archive objects) into the feature store, the objects not done before."""
    from shopwise.ingestion.backfill import backfill, imported_objects
    from shopwise.settings import get_settings

    _attach()
    settings = get_settings()
    keys = imported_objects(settings.archive_bucket, args.days or None)
    report = backfill(settings, keys, progress=not args.no_progress)
    print(report.summary())
    return 0 if not report.failed else 1


def _hyperparameters(pairs: list[str]) -> dict[str, str]:
    bad = [kv for kv in pairs if "=" not in kv]
    if bad:
        raise ValueError(f"hyperparameters come as NAME=VALUE, got {bad}")
    return dict(kv.split("=", 1) for kv in pairs)


def cmd_simulate(args: argparse.Namespace) -> int:
    from shopwise_local.simulate import SimulationOptions, simulate

    options = SimulationOptions(
        shoppers=args.shoppers,
        days=args.days,
        seed=args.seed,
        items=args.items,
        start=args.start,
        drift_day=args.drift_day,
    )
    truth = simulate(options, args.out, progress=not args.no_progress)
    counts = truth["counts"]
    print(
        f"wrote {args.out}/items.csv ({options.items} items, {truth['launched_items']} launched during the period), "
        f"{args.out}/events.csv ({counts['events']:,} events: {counts['product_view']:,} views, "
        f"{counts['add_to_cart']:,} cart adds, {counts['purchase']:,} purchases; {counts['sessions']:,} sessions, "
        f"{truth['anonymous_session_share']:.0%} anonymous), {args.out}/truth.json (taste drift on day "
        f"{truth['drift_day']}: {', '.join(truth['in_season'])} in season)"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train on files, as the SageMaker job does on its channels: no local stack needed. ``--remote``: the stack's
    training job on its archive, launched with the SageMaker SDK (``shopwise_local.remote``)."""
    if args.remote:
        return _train_remote(args)
    if args.events is None or args.out is None:
        raise ValueError("train needs --events and --out (or --remote, on the stack's archive)")
    from shopwise_jobs.training import train_files

    for path in (args.events, args.items):
        if path is not None and not path.exists():
            raise ValueError(f"{path} does not exist")
    metrics = train_files(args.events, args.items, args.out, _hyperparameters(args.hp))
    chosen = metrics["models"][metrics["selected"]]
    test = chosen["test"] or {}
    print(
        f"model {metrics['model_version']} -> {args.out}: {metrics['summary']}; test "
        + ", ".join(f"{k}={test[k]:.4f}" for k in ("ndcg@10", "recall@20", "hitrate@10", "coverage@10") if k in test)
        + f" ({metrics['split']['protocol']}, {metrics['split']['test_users']} test users); {args.out}/metrics.json"
    )
    return 0


def _train_remote(args: argparse.Namespace) -> int:
    from shopwise import config
    from shopwise_local.remote import METRIC_LINES, train_remote

    target = _attach()
    instance_type = args.instance_type or config.environment(target.environment).training_instance_type
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731 (stdout: the result)
    result = train_remote(target.sagemaker, target.deployed, _hyperparameters(args.hp), instance_type, progress)
    if args.json:
        print(json.dumps({**result.__dict__}, indent=2, default=str))
        return 0
    test = result.metrics["models"][result.metrics["selected"]]["test"] or {}
    print(
        f"{result.job_name}: {result.status} in {result.seconds:.0f} s; {result.metrics['summary']}; test "
        + ", ".join(f"{k}={test[k]:.4f}" for k in METRIC_LINES if k in test)
        + f"\nmodel: {result.model_uri} (not registered: `shopwise retrain` gates, transforms and promotes)"
    )
    return 0


def cmd_batch_recommend(args: argparse.Namespace) -> int:
    if args.remote:
        return _transform_remote(args)
    if args.model is None or args.out is None:
        raise ValueError("batch-recommend needs --model and --out (or --remote --version V, on the stack)")
    from shopwise_jobs.scoring import write_user_lists

    written = write_user_lists(args.model, args.k, args.out, progress=not args.no_progress)
    print(f"wrote {written:,} users' top {args.k} to {args.out}")
    return 0


def _transform_remote(args: argparse.Namespace) -> int:
    from shopwise import config
    from shopwise_local.remote import transform_remote

    if not args.version:
        raise ValueError("batch-recommend --remote needs --version (a registered version: shopwise models list)")
    target = _attach()
    env = config.environment(target.environment)
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731 (stdout: the result)
    result = transform_remote(
        target.sagemaker,
        target.deployed,
        args.version,
        args.instance_type or env.transform_instance_type,
        args.instance_count,
        env.transform_sizing(),
        progress,
    )
    if args.json:
        print(json.dumps({**result.__dict__}, indent=2, default=str))
        return 0
    print(
        f"{result.job_name}: {result.status} in {result.seconds:.0f} s; {result.rows:,} rows in "
        f"{len(result.objects)} objects under {result.output_uri} (not loaded: `shopwise promote` loads a version)"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    for path in (args.events, args.items):
        if path is not None and not path.exists():
            raise ValueError(f"{path} does not exist")
    if args.replay:
        return _evaluate_replay(args)
    from shopwise_jobs.report import evaluate_files

    evaluate_files(args.events, args.items, args.out, _hyperparameters(args.hp), log=print)
    return 0


def _evaluate_replay(args: argparse.Namespace) -> int:
    """What a store's anonymous visitors would be served, click by click (``shopwise_local.session_replay``), in a
    fresh local stack of its own (the running one, if any, is left alone)."""
    from shopwise_local.session_replay import ReplayOptions, format_table, replay_store

    options = ReplayOptions(
        test_days=args.test_days,
        sessions=args.sessions,
        think=args.think,
        variants=tuple(args.variants),
        context=args.context,
        known=args.known,
        hyperparameters={"budget": "quick", **_hyperparameters(args.hp)},
    )
    figures = replay_store(args.events, args.items, options, log=lambda line: print(line, file=sys.stderr))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replay.json").write_text(json.dumps(figures, indent=2))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(format_table(figures))
        print(f"wrote {args.out / 'replay.json'}")
    return 0


def cmd_retrain(args: argparse.Namespace, trigger: str = "manual") -> int:
    from shopwise.settings import get_settings
    from shopwise_local.pipeline import Rejected, run_pipeline

    target = _attach()
    hps = _hyperparameters(args.hp)
    if target.deployed:  # the retrain state machine in the account, followed from here
        return _deployed(target, "retrain", {"trigger": trigger})
    settings = get_settings()
    try:
        result = run_pipeline(
            settings.archive_bucket,
            settings.artifacts_bucket,
            state_dir() / "jobs",
            hyperparameters=hps,
            log=print,
            stage=lambda name: print(f"== {name}", flush=True),
            margin=args.margin,
            trigger=trigger,
        )
    except Rejected as exc:
        print(f"error: {exc}; the active model keeps serving", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "model_version": result.model_version,
                "rows_loaded": result.rows_loaded,
                "metrics": result.metrics,
                "seconds": result.seconds,
            },
            indent=2,
        )
    )
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    """The drift state machine's steps on the running stack: the drift job against the active model, its figures published."""
    from shopwise_local.drift import run_drift

    target = _attach()
    if target.deployed:
        return _deployed(target, "drift", {})
    report = run_drift(args.hours)
    alarms = list(report.get("alarms") or [])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"drift of the feature store and the last {args.hours:g} h of events against model {report['model_version']}"
        )
        features = report["features"]
        for name, value in sorted(features.items(), key=lambda kv: -(kv[1] if kv[1] is not None else -1)):
            value = float("nan") if value is None else value
            flag = "  SHIFTED" if value > 0.2 else "  moving" if value > 0.1 else ""
            print(f"  PSI {name:<32} {value:7.3f}{flag}")
        mix = report["event_mix_psi"]
        print(
            f"  PSI event mix                        {float('nan') if mix is None else mix:7.3f}  {report['event_mix']['recent']}"
        )
        print(f"  new items in recent interactions     {report['new_item_share']:7.1%}")
        print(f"  unknown shoppers among recent ones   {report['unknown_shopper_share']:7.1%}")
        serving = report.get("serving") or {}
        if serving.get("impressions"):
            print(
                f"  served: {serving['impressions']} answers, {serving['personalised_share']:.1%} personalised, "
                f"catalog coverage {serving['coverage']:.1%}; first source {serving['sources']}"
            )
            if serving.get("last_to_first_score"):
                print(f"  personalised lists, last item's score / first's: {serving['last_to_first_score']}")
        perf = report.get("performance") or {}
        if perf.get("answers"):
            personal = perf["personalised_ctr"]
            print(
                f"  click-through: {perf['clicks']} clicks on {perf['answers']} answers = {perf['ctr']:.2%}"
                + (f"; personalised answers {personal:.2%}" if personal is not None else "")
            )
        print(f"published {len(report['published'])} metrics; alarms: " + ("; ".join(alarms) if alarms else "none"))
    if args.retrain and alarms:
        print("== drift above threshold: retraining", flush=True)
        return cmd_retrain(args, trigger="drift: " + "; ".join(alarms))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """The model registry: every trained version, newest first, with its status and why."""
    from datetime import UTC, datetime

    from shopwise.lifecycle import registry
    from shopwise.settings import get_settings

    _attach()
    found = registry.records(get_settings().config_table)
    if args.action == "sync":
        # each version's model package again (a mirror SageMaker refused before is created or brought up to date)
        for record in found:
            registry.update(get_settings().config_table, record)
        mirrored = [r for r in found if r.package_arn]
        print(
            f"{len(mirrored)} of {len(found)} versions mirrored in {get_settings().model_package_group or 'no group'}"
        )
        return 0 if len(mirrored) == len(found) else 1
    if args.json:
        print(json.dumps([r.__dict__ for r in found], indent=2))
        return 0
    if not found:
        print("no models yet: run `shopwise retrain` (or `make demo`)")
        return 0
    from shopwise.dal.recommendations import get_pointer

    pointer = get_pointer(get_settings().config_table)
    print(
        f"{'version':<28} {'status':<11} {'slot':<4} {'trained (UTC)':<17} {'data window':<23} {'val':>7} {'test':>7}"
        "  selected / reason"
    )
    for r in found:
        day = lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")  # noqa: E731
        window = f"{day(r.data_window[0])}..{day(r.data_window[1])}" if len(r.data_window) == 2 else ""
        trained = datetime.fromtimestamp(r.trained_at, UTC).strftime("%Y-%m-%d %H:%M")
        val, test = r.validation.get(r.metric, float("nan")), r.test.get(r.metric, float("nan"))
        slot = pointer.slot_of(r.version)
        print(
            f"{r.version:<28} {r.status:<11} {slot:<4} {trained:<17} {window:<23} {val:>7.4f} {test:>7.4f}"
            f"  {r.reason or r.selected}"
        )
    print(
        f"serving: {pointer.version or 'nothing'}; a rollback restores {pointer.slots.get(pointer.standby, {}).get('version') or 'nothing'}"
    )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Serve a registered version from the next request on: a pointer flip when it is loaded in either slot, else
    its batch-transform output is loaded again into the standby slot first (no training, no transform)."""
    from shopwise import config
    from shopwise.dal.erasures import pending_targets
    from shopwise.dal.recommendations import slot_table
    from shopwise.lifecycle import registry
    from shopwise.lifecycle.loading import load
    from shopwise.settings import get_settings

    _attach()
    settings = get_settings()

    def reload(record: registry.ModelRecord) -> None:
        print(f"loading {record.version} again from {record.output_uri} ...", flush=True)
        result = load(
            record.output_uri,
            record.version,
            settings.lists_stem,
            settings.config_table,
            settings.recommendations_ttl_days,
            pending_targets(f"s3://{settings.artifacts_bucket}/{config.ERASURES_PREFIX}"),  # erased since: left out
        )
        print(
            f"  {result.rows} rows imported into slot {result.slot} (its table {slot_table(settings.lists_stem, result.slot)})"
        )

    try:
        record = registry.promote(settings.config_table, args.version, reload=reload, reason=f"promoted by {args.by}")
    except (registry.PromotionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"serving {record.version} from the next request on")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Serve the version before the active one again (the standby slot): no recomputation, next request."""
    from shopwise.lifecycle import registry
    from shopwise.settings import get_settings

    _attach()
    try:
        record = registry.rollback(get_settings().config_table, reason=f"rolled back by {args.by}")
    except registry.PromotionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"rolled back: serving {record.version} from the next request on")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """An experiment's readout per variant, or a campaign run's lift over its holdout: a table, JSON and a plot."""
    from shopwise_jobs.readout import format_readout
    from shopwise_local.reports import campaign_report, experiment_report

    _attach()
    out = args.out or state_dir() / "reports"
    try:
        if args.kind == "experiment":
            written = experiment_report(args.name, out, args.attribution_hours)
        else:
            written = campaign_report(args.name, out, args.run, args.days)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(written.readout.to_json(), indent=2))
    else:
        print(format_readout(written.readout))
        print(f"wrote {written.json_path} and {written.plot_path}")
    return 2 if written.readout.sample_ratio_mismatch else 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """Ask the real serve handler (in this process, against the local stack) for one shopper's list."""
    from shopwise_local.lambda_runtime import LocalFunction, http_api_event

    _attach()
    from urllib.parse import quote, urlencode

    path = f"/v1/server/users/{quote(args.user_id, safe='')}/recommendations"
    params = {"n": args.n, "id_type": "anonymous" if args.anonymous else "customer", "placement": args.placement}
    params.update({k: v for k, v in (("category", args.category), ("market", args.market)) if v})
    # as the store's servers ask (the operator's credentials, through the IAM-authorised server route)
    event = http_api_event("GET", path, urlencode(params), iam_caller=os.environ.get("AWS_ACCESS_KEY_ID", "operator"))
    response = LocalFunction("serve").invoke(event)
    body = json.loads(response["body"])
    if response["statusCode"] != 200:
        print(f"error {response['statusCode']}: {body.get('message', body)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    arm = f", {body['experiment']}/{body['variant']}" if body["experiment"] else ""
    print(
        f"{body['placement']} recommendations for {args.user_id} (model {body['model_version']}{arm}; "
        f"sources {' > '.join(body['sources'])}; {body['read_round_trips']} read):"
    )
    for rank, item in enumerate(body["items"], start=1):
        print(f"{rank:3d}. item {item['item_id']:<10} score {item['score']:<10.4f} {item['reason']['text']}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a shopper token with the stack's key, as the store's backend does for a shopper's browser."""
    from shopwise_local.store_backend import shopper_token

    if not args.customer and not args.visitor:
        raise ValueError("a token acts for a customer (--customer) and/or a visitor (--visitor)")
    _attach()
    print(shopper_token(customer=args.customer, visitor=args.visitor, ttl=args.ttl))
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    """Show, set or clear the A/B experiments serving reads (the config table's ``experiments`` row)."""
    from shopwise.dal.experiments import clear_experiments, get_experiments, put_experiments
    from shopwise.serving.experiments import parse_experiments
    from shopwise.settings import get_settings

    _attach()
    table = get_settings().config_table
    if args.action == "set":
        if not args.file:
            raise ValueError("experiments set needs a JSON file: shopwise experiments set FILE")
        text = args.file.read_text()
        experiments = parse_experiments(text)  # a bad file is refused with what is wrong, before anything changes
        put_experiments(table, json.dumps([e.to_json() for e in experiments], separators=(",", ":")))
        print(
            f"{len(experiments)} experiment(s) active from the next request: {', '.join(e.name for e in experiments)}"
        )
    elif args.action == "clear":
        clear_experiments(table)
        print("no experiments: every shopper gets the default blend")
    else:
        text = get_experiments(table) or "[]"
        print(json.dumps([e.to_json() for e in parse_experiments(text)], indent=2))
    return 0


def cmd_campaigns(args: argparse.Namespace) -> int:
    """List the configured campaigns, run one now on the running local stack, or page through its latest run."""
    from dataclasses import asdict
    from datetime import datetime

    from shopwise.campaigns.rules import CAMPAIGNS, campaign
    from shopwise.campaigns.runs import recipients_page, run_campaign
    from shopwise.dal.serving_read import Tables
    from shopwise.settings import get_settings

    if args.action == "list":
        print(json.dumps([asdict(c) for c in CAMPAIGNS], indent=2))
        return 0
    if not args.name:
        raise ValueError(
            f"campaigns {args.action} needs a campaign name: one of {', '.join(c.name for c in CAMPAIGNS)}"
        )
    spec = campaign(args.name)
    _attach()
    settings = get_settings()
    if args.action == "recipients":
        print(json.dumps(recipients_page(settings.artifacts_bucket, spec.name, args.cursor, args.limit), indent=2))
        return 0
    now = datetime.fromisoformat(args.at).timestamp() if args.at else None
    tables = Tables.from_settings(settings)
    report = run_campaign(spec, tables, settings.artifacts_bucket, now, settings.repeat_purchase_categories)
    if args.json:
        print(json.dumps(asdict(report), indent=2, default=str))
        return 0
    print(
        f"{spec.name}: {report.profiles} profiles, {report.in_segment} in the segment, {report.held_out} held out, "
        f"{report.capped} capped, {report.recipients} recipients -> s3://{settings.artifacts_bucket}/{report.keys['csv']}"
    )
    return 0


def _erasure_ids(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(id type, id) pairs from the arguments and the bulk file: one id per line, or "type,id" (a # starts a
    comment)."""
    found = [(args.type, i) for i in args.ids]
    if args.file:
        for number, line in enumerate(args.file.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            kind, comma, value = line.partition(",")
            if comma and kind.strip() in ID_TYPES:
                found.append((kind.strip(), value.strip()))
            elif comma:
                raise ValueError(f"{args.file}:{number}: unknown id type {kind.strip()!r} ({', '.join(ID_TYPES)})")
            else:
                found.append((args.type, line))
    if not found:
        raise ValueError("name the shoppers to erase: shopwise erase ID... or --file FILE")
    return found


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase shoppers through the API's DELETE /v1/users/{id} (signed, as the store's back office calls it)."""
    from urllib.parse import quote

    from tqdm import tqdm

    from shopwise_local.store_backend import call

    info = _attach()
    failed = 0
    pairs = _erasure_ids(args)
    for kind, value in tqdm(pairs, unit="shopper", disable=len(pairs) < 10, file=sys.stderr):
        status, body = call(info.api_url, "DELETE", f"/v1/users/{quote(value, safe='')}?id_type={kind}", signed=True)
        if status != 200:
            failed += 1
            print(
                f"error: {kind} #{pairs.index((kind, value)) + 1}: {status} {body.get('message', '')}", file=sys.stderr
            )
            continue
        print(
            json.dumps({k: body[k] for k in ("erasure_id", "aliases", "profiles", "sessions", "rows_deleted")})
            if not args.quiet
            else body["erasure_id"]
        )
    return 1 if failed else 0


def cmd_erasures(args: argparse.Namespace) -> int:
    """The erasure receipts (GET /v1/erasures, signed), or a purge run now."""
    from shopwise_local.store_backend import call

    info = _attach()
    if args.action == "purge" and info.deployed:
        return _deployed(info, "purge", {})
    if args.action == "purge":
        from shopwise_local.purge import run_purge

        done = run_purge(
            state_dir() / "jobs", [state_dir() / "logs", state_dir() / "jobs"], args.min_age_hours, log=print
        )
        print(json.dumps(done, indent=2))
        return 0
    if args.action == "show":
        if not args.id:
            raise ValueError("erasures show needs an erasure id (see `shopwise erasures list`)")
        status, body = call(info.api_url, "GET", f"/v1/erasures/{args.id}", signed=True)
    else:
        status, body = call(info.api_url, "GET", f"/v1/erasures?limit={args.limit}", signed=True)
    print(json.dumps(body, indent=2))
    return 0 if status == 200 else 1


def cmd_archive(args: argparse.Namespace) -> int:
    """The event archive: SQL over it (DuckDB here, Athena on a deployed stack), or its gzip JSON objects
    rewritten as Parquet."""
    from dataclasses import asdict

    from shopwise.settings import get_settings

    target = _attach()
    bucket = get_settings().archive_bucket
    if args.action == "convert":
        from shopwise.ingestion.convert import convert_archive

        if target.deployed:  # the stack's Glue job: the same conversion, spread over its workers
            from shopwise.dal.glue import run_job

            if not target.convert_job:
                raise RuntimeError(
                    f"stack {target.name} has no ArchiveConvertJob output: deployed by an older version?"
                )
            state = run_job(target.convert_job, {}, print)
            return 0 if state == "SUCCEEDED" else 1
        report = convert_archive(bucket, progress=not args.no_progress)
        print(json.dumps(asdict(report)) if args.json else report.summary())
        return 0 if not report.remaining else 1
    from shopwise_local.archive_query import format_answer, query_athena, query_local

    if not args.sql:
        raise ValueError('archive query needs the SQL, e.g. "select event_type, count(*) from events group by 1"')
    if target.deployed:
        if not target.archive.get("workgroup"):
            raise RuntimeError(f"stack {target.name} has no ArchiveWorkgroup output: deployed by an older version?")
        answer = query_athena(target.archive["workgroup"], target.archive["database"], args.sql, args.limit)
    else:
        answer = query_local(bucket, args.sql, args.days or None, args.limit)
    if args.json:
        print(json.dumps(asdict(answer), default=str))
    else:
        print(format_answer(answer))
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    """The training data set from the stack's archive, built on Spark: here PySpark in local mode over a copy of the
    local archive, on a deployed stack its Glue job (the same ``shopwise_jobs.spark_dataset``), followed to the end.
    Either way each archive day's parse is kept in the artifacts bucket (``datasets/_days/``) and a later build
    parses only the days whose objects changed."""
    import tempfile
    from dataclasses import asdict

    from shopwise import config
    from shopwise.dal.erasures import pending_targets
    from shopwise.dal.objects import download_prefix
    from shopwise.settings import get_settings
    from shopwise_jobs.spark_dataset import build, catalog_categories, spark_session
    from shopwise_local.archive_query import local_copy

    target = _attach()
    settings = get_settings()
    days_uri = f"s3://{settings.artifacts_bucket}/{config.PARSED_DAYS_PREFIX}"
    if target.deployed:
        from shopwise.dal.glue import run_job

        if not target.dataset_job:
            raise RuntimeError(f"stack {target.name} has no DatasetJob output: deployed by an older version?")
        if args.out.name.startswith("_"):
            raise ValueError(
                f"a data set's name may not start with '_' ({args.out.name}): datasets/_days/ is the cache"
            )
        out = f"s3://{settings.artifacts_bucket}/{config.DATASETS_PREFIX}{args.out.name}/"
        arguments = {"--out": out, "--days": str(args.days), **({"--reparse": "true"} if args.reparse else {})}
        state = run_job(target.dataset_job, arguments, print)
        print(json.dumps({"state": state, "out": out}))
        return 0 if state == "SUCCEEDED" else 1
    with tempfile.TemporaryDirectory(prefix="shopwise-dataset-") as scratch:
        events = Path(scratch) / "events"
        objects, unconverted = local_copy(settings.archive_bucket, events, args.days or None)
        if not objects:
            raise ValueError("the archive holds no Parquet objects" + (" of those days" if args.days else ""))
        # what the Glue job reads in AWS: the catalog's export (the feature snapshot's categories), the pending
        # erasures (their shoppers' events are left out)
        categories = catalog_categories(f"s3://{settings.artifacts_bucket}/{config.CATALOG_KEY}")
        erased = pending_targets(f"s3://{settings.artifacts_bucket}/{config.ERASURES_PREFIX}")
        # the kept parses, as the Glue job reads and writes them in the artifacts bucket (where the purge finds them)
        parsed = Path(scratch) / "days"
        if not args.reparse:
            download_prefix(days_uri, parsed)
        spark = spark_session()
        try:
            report = build(
                spark,
                str(events),
                str(args.out.resolve()),
                args.days or None,
                erased=erased,
                categories=categories,
                parsed_days=str(parsed),
                reparse=args.reparse,
            )
        finally:
            spark.stop()
        _keep_parsed_days(parsed, days_uri, report.days_parsed)
    figures = {**asdict(report), "objects": objects, "unconverted_left_out": unconverted, "out": str(args.out)}
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0


def _keep_parsed_days(folder: Path, uri: str, days: list[str]) -> None:
    """The days parsed by a local build into the artifacts bucket, each replacing what was kept of that day
    (Spark's checksum files left out)."""
    from shopwise.dal.objects import delete_prefix, parse_s3_uri, upload_file
    from shopwise_jobs.spark_dataset import MANIFEST

    bucket, prefix = parse_s3_uri(uri)
    for day in days:
        delete_prefix(bucket, f"{prefix}dt={day}/")
        files = [p for p in (folder / f"dt={day}").iterdir() if p.is_file() and not p.name.startswith(".")]
        # the manifest last: a build that stops between finds no manifest and parses the day again
        for path in sorted(files, key=lambda p: (p.name == MANIFEST, p.name)):
            upload_file(path, bucket, f"{prefix}dt={day}/{path.name}")


def cmd_failures(args: argparse.Namespace) -> int:
    """The failure queue: list its messages (coordinates and reasons), or replay them into the feature store."""
    from shopwise.ingestion.failures import list_failures, replay_failures
    from shopwise.settings import get_settings

    _attach()
    settings = get_settings()
    if args.action == "replay":
        report = replay_failures(settings, progress=not args.no_progress)
        print(report.summary())
        return 0 if not report.kept else 1
    rows = [f.row() for f in list_failures(settings.failed_events_queue_url)]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("the failure queue is empty")
    else:
        print(f"{'kind':7} {'reason':40} {'shard':22} {'records':>7}  sent at              sequence numbers")
        for r in rows:
            span = r["first"] if r["first"] == r["last"] else f"{r['first']}..{r['last']}"
            print(f"{r['kind']:7} {r['reason'][:40]:40} {r['shard']:22} {r['records']:>7}  {r['sent_at']}  {span}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """The pseudonymisation key's versions, or a rotation (a new current key; the older ones stay)."""
    from shopwise.dal.secrets import read_secret, write_secret
    from shopwise.privacy.pseudonyms import key_versions, rotated
    from shopwise.settings import get_settings

    _attach()
    secret = get_settings().pseudonym_key_secret
    text = read_secret(secret, fresh=True)
    if args.action == "rotate":
        text, version = rotated(text)
        write_secret(secret, text)
        print(f"key {version} is current; events are keyed with it from the functions' next secret read (<= 5 min)")
    current, keys = key_versions(text)
    print(json.dumps({"current": current, "versions": sorted(keys)}))
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """Show one entity's features as the feature store holds them now (profiles resolved through stitching)."""
    import time

    from shopwise.dal.feature_store import FeatureStore
    from shopwise.dal.recommendations import serving_rows
    from shopwise.dal.stream import shard_ids
    from shopwise.features import definitions as f
    from shopwise.keys import popular_key, session_key
    from shopwise.settings import get_settings
    from shopwise_local.inspect import profile_features

    _attach()
    settings = get_settings()
    store, now = FeatureStore(settings.features_table), time.time()
    out: dict[str, Any]
    if args.entity == "profile":
        found = profile_features(args.id, args.anonymous, now)
        if found is None:
            print(f"no profile for {args.id} (no events with personalisation consent yet)", file=sys.stderr)
            return 1
        out = found
    elif args.entity in ("category", "market"):  # computed by the batch jobs, not per event: the served list
        key = popular_key(f"{args.entity}:{args.id}")
        row = serving_rows(settings.lists_stem, settings.config_table, [key]).get(key)
        if row is None:
            print(f"no popular list for {args.entity} {args.id} in the serving model", file=sys.stderr)
            return 1
        out = {"model_version": row.model_version, "popular": [[p.item_id, round(p.score, 4)] for p in row.items]}
    elif args.entity == "item":  # its parts (one per stream shard, and the replays' shared one), merged
        item = store.item_features([args.id], shard_ids(settings.events_stream)).get(args.id)
        if item is None:
            print(f"nothing stored for item {args.id}", file=sys.stderr)
            return 1
        out = item.windows(now)
    else:
        key = session_key(args.id)
        doc = store.read([key])[key]
        if not doc.version:
            print(f"nothing stored under {key}", file=sys.stderr)
            return 1
        out = f.SessionFeatures.from_json(doc.data).to_json()
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    """The operator's console on a loopback port, against the running local stack or ``--stack NAME`` (with this
    process's AWS credentials): nothing of it is deployed."""
    from shopwise_local.console import Console, ConsoleTarget, examples_from, serve_console

    target = _attach()
    examples = examples_from(args.examples) if args.examples else []
    allow = not target.deployed or args.allow_events
    console = Console(ConsoleTarget(target.name, target.environment, target.api_url, target.deployed, allow, examples))
    server = serve_console(console, args.port)
    print(f"console of {target.name}: http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops it)", flush=True)
    if target.deployed and not allow:
        print("events from the page are off (they would train the next model): --allow-events turns them on")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    """Price the synthesized stack under one or more loads, beside Amazon Personalize (``shopwise_local.costs``)."""
    from dataclasses import replace

    from shopwise_local import costs

    shape = costs.StackShape.from_template(_template(args.env, args.template), f"shopwise-{args.env}")
    prices_path = Path(args.prices) if args.prices else costs.latest_prices(args.region or "us-east-1")
    units_path = Path(args.units) if args.units else costs.HERE / "units.json"
    prices, units = costs.load_json(prices_path), costs.load_json(units_path)
    assume = costs.Assumptions()
    for pair in args.assume:
        key, _, value = pair.partition("=")
        known = costs.Assumptions.__dataclass_fields__
        if key not in known or not value:
            raise ValueError(f"--assume {pair!r}: expected NAME=NUMBER, NAME one of {', '.join(known)}")
        changed: dict[str, Any] = {key: float(value)}
        assume = replace(assume, **changed)
    rates = args.requests_per_s
    events = args.events_per_s or [2.0 * r for r in rates]  # the design envelope's 1,000 events/s at 500 requests/s
    if len(events) == 1:
        events = events * len(rates)
    if len(events) != len(rates):
        raise ValueError("--events-per-s takes one value, or one per --requests-per-s value")
    retrains = {"schedule": None, "daily": 30.4, "weekly": 4.35, "none": 0.0}[args.retrain]
    estimates = [
        costs.estimate(
            shape,
            costs.Load(e, r, args.shoppers, args.items, retrains),
            units,
            prices,
            assume,
            as_configured=args.as_configured,
        )
        for e, r in zip(events, rates, strict=True)
    ]
    if args.json:
        print(json.dumps([costs.as_json(e) for e in estimates], indent=2))
    else:
        print(costs.render(estimates, shape, units_path, prices_path, units, prices, assume, detail=not args.summary))
    return 0


def _template(env: str, path: str) -> dict[str, Any]:
    """The stack's template: the file given, what `make synth ENV=<env>` wrote, or a synth in this process."""
    from shopwise_local.paths import REPO_ROOT

    chosen = Path(path) if path else REPO_ROOT / "cdk.out" / env / f"shopwise-{env}.template.json"
    if chosen.is_file():
        return dict(json.loads(chosen.read_text()))
    if path:
        raise FileNotFoundError(f"no template at {chosen}")
    print(f"no {chosen.relative_to(REPO_ROOT)}: synthesizing shopwise-{env} (about 10 s) ...", file=sys.stderr)
    # jsii's end-of-life notice for the machine's Node 20, which the Makefile silences too: in this process it
    # came out as a dozen lines of bytes on stderr
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    try:
        sys.path.insert(0, str(REPO_ROOT / "cdk"))
        import aws_cdk as cdk
        from app import add_stack  # type: ignore[import-not-found]

        app = cdk.App()
        stack = add_stack(app, env, nag=False)
        return dict(app.synth().get_stack_by_name(stack.stack_name).template)
    except Exception as exc:  # a missing layer build or CDK install: say what to run
        raise RuntimeError(f"could not synthesize the stack ({exc}): run `make synth ENV={env}` first") from exc


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the help says it already, or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, "", [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its words ("models", "local up"), nested ones included."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found[name] = child
                found.update({f"{name} {k}": v for k, v in subcommands(child).items()})
    return found


def completion_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion function from the parser itself: the commands, then each command's options and the
    choices of its positional arguments (``eval "$(shopwise completion bash)"``)."""
    top = [a for action in parser._actions for a in action.option_strings if a.startswith("--")]
    commands = {k: v for k, v in subcommands(parser).items() if " " not in k}
    valued = [a for action in parser._actions if action.nargs != 0 for a in action.option_strings]
    lines = [
        '# bash completion for shopwise: eval "$(shopwise completion bash)" (in ~/.bashrc to keep it)',
        "_shopwise() {",
        '  local cur="${COMP_WORDS[COMP_CWORD]}" cmd="" skip=""',
        '  for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do',
        '    if [ -n "$skip" ]; then skip=""; continue; fi',
        f'    case "$w" in {"|".join(valued)}) skip=1;; -*) ;; *) cmd="$w"; break;; esac',
        "  done",
        '  case "$cmd" in',
    ]
    for name, child in commands.items():
        words = [a for action in child._actions for a in action.option_strings if a.startswith("--")]
        for action in child._actions:
            if not action.option_strings and action.choices:
                words += [str(c) for c in action.choices]
        lines.append(f'    {name}) COMPREPLY=($(compgen -W "{" ".join(dict.fromkeys(words))}" -- "$cur"));;')
    lines.append(f'    *) COMPREPLY=($(compgen -W "{" ".join([*commands, *top])}" -- "$cur"));;')
    lines += ["  esac", "}", "complete -o default -F _shopwise shopwise", ""]
    return "\n".join(lines)


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(build_parser()), end="")
    return 0


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    from shopwise_local.paths import code_version

    try:
        number = package_version("shopwise")
    except PackageNotFoundError:
        number = "unknown"
    return f"shopwise {number} (code {code_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopwise", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=version())
    parser.add_argument(
        "--stack",
        default="",
        help="operate a deployed stack (its CloudFormation name, e.g. shopwise-prod) instead of the running local one",
    )
    parser.add_argument("--profile", default="", help="with --stack: the AWS profile whose credentials to use")
    parser.add_argument("--region", default="", help="with --stack: the stack's region")
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", help="the local stack").add_subparsers(dest="local_command", required=True)
    up = local.add_parser("up", help="start the local stack, load MovieLens, train, serve (what `make demo` runs)")
    up.add_argument("--port", type=int, default=8080, help="HTTP API port (default 8080)")
    up.add_argument("--aws-port", type=int, default=4566, help="local AWS endpoint port (default 4566)")
    up.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help=f"a MovieLens latest-small folder (e.g. {SHARED_DATA / 'ml-latest-small'}); default: a simulated store",
    )
    up.add_argument(
        "--replay-days", type=float, default=60.0, help="MovieLens: replay the newest N days through the API"
    )
    up.add_argument("--no-serve", action="store_true", help="stop after the checks instead of serving")
    up.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    up.set_defaults(func=cmd_local_up)

    imp = sub.add_parser("import", help="bulk import into the stack: uploaded, imported there by a function or a job")
    imp.add_argument("kind", choices=["events", "items"])
    imp.add_argument("file", type=Path, help="CSV or JSON Lines (optionally .gz)")
    imp.add_argument("--show-bad", type=int, default=20, help="how many bad rows to list")
    imp.add_argument("--no-backfill", action="store_true", help="events: archive only (`shopwise backfill` later)")
    imp.add_argument("--no-progress", action="store_true", help="no progress bars")
    imp.add_argument("--json", action="store_true", help="the import's report as JSON (bad rows: the first 1,000)")
    imp.add_argument(
        "--via",
        choices=["auto", "function", "job"],
        default="auto",
        help="where the stack imports it (auto: the function up to 5 M lines, the SageMaker job above)",
    )
    imp.set_defaults(func=cmd_import)

    sim = sub.add_parser("simulate", help="write a synthetic store (items.csv, events.csv, truth.json)")
    sim.add_argument("--shoppers", type=int, default=2000)
    sim.add_argument("--days", type=int, default=60)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--items", type=int, default=1500)
    sim.add_argument("--start", default="2026-09-01", help="first day (ISO date)")
    sim.add_argument("--drift-day", type=int, default=None, help="day of the taste drift (default: 2/3 through)")
    sim.add_argument("--out", type=Path, default=Path("simulated"))
    sim.add_argument("--no-progress", action="store_true")
    sim.set_defaults(func=cmd_simulate)

    hp_help = "a hyperparameter (repeatable), e.g. --hp budget=quick --hp models=ease,itemknn"
    train = sub.add_parser("train", help="train on files as the SageMaker job does: events (+ items) -> model folder")
    train.add_argument("--events", type=Path, help="events import file (CSV/JSON Lines) or archive")
    train.add_argument("--items", type=Path, default=None, help="catalog import file (CSV/JSON Lines)")
    train.add_argument("--out", type=Path, help="model folder to write")
    train.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE", help=hp_help)
    train.add_argument(
        "--remote",
        action="store_true",
        help="the stack's SageMaker training job on its archive, launched with the SageMaker SDK, followed to the end",
    )
    train.add_argument("--instance-type", default="", help="--remote: default the environment's training instance")
    train.add_argument("--json", action="store_true", help="--remote: the job's result as JSON")
    train.set_defaults(func=cmd_train)

    batch = sub.add_parser("batch-recommend", help="top-K for every user of a model folder, as JSON Lines")
    batch.add_argument("--model", type=Path)
    batch.add_argument("-k", type=int, default=20)
    batch.add_argument("--out", type=Path, help="FILE.jsonl")
    batch.add_argument(
        "--remote",
        action="store_true",
        help="a registered version's batch transform on the stack, launched with the SageMaker SDK (not loaded)",
    )
    batch.add_argument("--version", default="", help="--remote: the registered version")
    batch.add_argument("--instance-type", default="", help="--remote: default the environment's transform instance")
    batch.add_argument(
        "--instance-count",
        type=int,
        default=0,
        help="--remote: default sized for the version's users, as the retrain does",
    )
    batch.add_argument("--json", action="store_true", help="--remote: the job's result as JSON")
    batch.add_argument("--no-progress", action="store_true")
    batch.set_defaults(func=cmd_batch_recommend)

    ev = sub.add_parser("evaluate", help="offline evaluation of every model family: table, JSON and HTML report")
    ev.add_argument("--events", type=Path, required=True)
    ev.add_argument("--items", type=Path, default=None)
    ev.add_argument("--out", type=Path, default=Path("evaluation"), help="folder for evaluation.json/.html")
    ev.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="protocol=temporal|leave_last_out, test_fraction, holdout, budget, models, metric",
    )
    ev.add_argument(
        "--replay",
        action="store_true",
        help="score what is served: held-out sessions replayed click by click through a fresh local stack",
    )
    ev.add_argument("--test-days", type=float, default=2.0, help="--replay: the newest days held out (2)")
    ev.add_argument("--sessions", type=int, default=200, help="--replay: held-out sessions replayed (200)")
    ev.add_argument("--think", type=float, default=1.0, help="--replay: seconds between a view and the list (1)")
    ev.add_argument("--variants", nargs="*", default=[], metavar="KNOB=VALUE[,...]", help="--replay: blend arms")
    ev.add_argument("--context", action="store_true", help="--replay: also with the page's context and no wait")
    ev.add_argument(
        "--known", action="store_true", help="--replay: known customers' sessions (their lists in play), with context"
    )
    ev.add_argument("--json", action="store_true", help="--replay: the figures as JSON")
    ev.set_defaults(func=cmd_evaluate)

    retrain = sub.add_parser("retrain", help="train -> batch transform -> load on the running local stack")
    retrain.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE", help=hp_help)
    retrain.add_argument(
        "--margin", type=float, default=None, help="promotion gate: how much worse than the active model (0.02)"
    )
    retrain.set_defaults(func=cmd_retrain)

    drift = sub.add_parser("drift", help="PSI per feature, event mix, new items, unknown shoppers vs the active model")
    drift.add_argument("--hours", type=float, default=24.0, help="how many hours of newest events (24)")
    drift.add_argument("--json", action="store_true")
    drift.add_argument(
        "--retrain", action="store_true", help="start `shopwise retrain` when an alarm fires (what the AWS alarms do)"
    )
    drift.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE", help=hp_help)
    drift.add_argument("--margin", type=float, default=None, help="the promotion gate's margin (default: the env's)")
    drift.set_defaults(func=cmd_drift)

    models = sub.add_parser(
        "models", help="the model registry: list it, or sync its mirror in SageMaker Model Registry"
    )
    models.add_argument("action", choices=["list", "sync"])
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    report = sub.add_parser("report", help="experiment readout per variant, or a campaign run's lift over its holdout")
    report.add_argument("kind", choices=["experiment", "campaign"])
    report.add_argument("name")
    report.add_argument("--out", type=Path, default=None, help="where the JSON and the plot go (default: state dir)")
    report.add_argument("--attribution-hours", type=float, default=24.0, help="click-to-purchase window (24)")
    report.add_argument("--run", default="", help="campaign: the run id (default: the latest)")
    report.add_argument("--days", type=float, default=7.0, help="campaign: purchases within N days of the run (7)")
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=cmd_report)

    who = os.environ.get("USER", "the operator")
    promote = sub.add_parser("promote", help="serve a registered model version (loads its output again if needed)")
    promote.add_argument("version")
    promote.add_argument("--by", default=who, help="who asked (recorded in the registry)")
    promote.set_defaults(func=cmd_promote)
    rollback = sub.add_parser("rollback", help="serve the version before the active one again, instantly")
    rollback.add_argument("--by", default=who, help="who asked (recorded in the registry)")
    rollback.set_defaults(func=cmd_rollback)

    rec = sub.add_parser("recommend", help="recommendations for one shopper from the running local stack")
    rec.add_argument("user_id")
    rec.add_argument("-n", type=int, default=10)
    rec.add_argument("--json", action="store_true")
    rec.add_argument("--anonymous", action="store_true", help="user_id is a visitor (cookie) id, not a customer id")
    rec.add_argument("--placement", choices=["home", "product", "cart", "email"], default="home")
    rec.add_argument("--category", default="", help='only items in this category path ("Shoes>Running")')
    rec.add_argument("--market", default="", help="the storefront's market (its bestsellers fill the list)")
    rec.set_defaults(func=cmd_recommend)

    tok = sub.add_parser("token", help="mint a shopper token (what the store's backend hands a shopper's browser)")
    tok.add_argument("--customer", default="", help="the store's customer id the browser acts for")
    tok.add_argument("--visitor", default="", help="the anonymous visitor id the browser acts for")
    tok.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid (default 3600)")
    tok.set_defaults(func=cmd_token)

    exp = sub.add_parser("experiments", help="show, set or clear the A/B experiments of the running local stack")
    exp.add_argument("action", choices=["show", "set", "clear"])
    exp.add_argument("file", nargs="?", type=Path, help="for set: a JSON list of experiments (see README)")
    exp.set_defaults(func=cmd_experiments)

    camp = sub.add_parser("campaigns", help="email campaigns: list them, run one on the running stack, page its run")
    camp.add_argument("action", choices=["list", "run", "recipients"])
    camp.add_argument("name", nargs="?", default="", help="the campaign (see `shopwise campaigns list`)")
    camp.add_argument("--at", default="", help="run as of this ISO time instead of now (what-if runs, tests)")
    camp.add_argument("--cursor", default="", help="recipients: the `next` of the page before")
    camp.add_argument("--limit", type=int, default=100, help="recipients: page size")
    camp.add_argument("--json", action="store_true", help="run: the run's report as JSON (list, recipients: always)")
    camp.set_defaults(func=cmd_campaigns)

    erase = sub.add_parser("erase", help="erase shoppers everywhere (DELETE /v1/users/{id}); prints each receipt")
    erase.add_argument("ids", nargs="*", help="the shoppers' ids (of --type)")
    erase.add_argument("--type", choices=ID_TYPES, default="customer", help="what the ids are")
    erase.add_argument("--file", type=Path, help='a bulk file: one id per line, or "type,id" lines')
    erase.add_argument("--quiet", action="store_true", help="print only the erasure ids")
    erase.set_defaults(func=cmd_erase)

    ers = sub.add_parser("erasures", help="the erasure receipts; purge: run the purge now (locally)")
    ers.add_argument("action", choices=["list", "show", "purge"])
    ers.add_argument("id", nargs="?", default="", help="show: the erasure id")
    ers.add_argument("--limit", type=int, default=100, help="list: how many, newest first")
    ers.add_argument(
        "--min-age-hours",
        type=float,
        default=25.0,
        help="purge: erasures at least this old (25: nothing of them can still be in the stream; 0: all, now)",
    )
    ers.set_defaults(func=cmd_erasures)

    back = sub.add_parser("backfill", help="fold imported history from the archive into the feature store")
    back.add_argument("--days", nargs="*", default=[], help="only these archive days (YYYY-MM-DD: the import day)")
    back.add_argument("--no-progress", action="store_true", help="no progress bar")
    back.set_defaults(func=cmd_backfill)

    arch = sub.add_parser(
        "archive",
        help="the event archive: SQL over it (DuckDB here, Athena on --stack), or convert gzip JSON objects to Parquet",
        description="query: SQL over the table `events` (the archive's columns, partitions dt=YYYY-MM-DD and hour=HH). "
        "convert: rewrite the archive's gzip JSON Lines objects as Parquet, each deleted once its Parquet is complete.",
    )
    arch.add_argument("action", choices=["query", "convert"])
    arch.add_argument("sql", nargs="?", default="", help="query: the SQL (one statement)")
    arch.add_argument("--days", type=int, default=0, help="query, locally: only the newest N days' objects (0: all)")
    arch.add_argument("--limit", type=int, default=10_000, help="query: at most this many rows back")
    arch.add_argument("--json", action="store_true", help="one JSON document")
    arch.add_argument("--no-progress", action="store_true", help="convert: no progress bar")
    arch.set_defaults(func=cmd_archive)

    data = sub.add_parser(
        "dataset",
        help="the training data set (interactions, id maps, feature snapshot) from the archive, built on Spark "
        "(PySpark in local mode here; the stack's Glue job with --stack)",
    )
    data.add_argument("action", choices=["build"])
    data.add_argument(
        "--out",
        type=Path,
        default=Path("dataset"),
        help="folder: interactions/, users/, items/, features/ (--stack: datasets/<its name>/ in the artifacts bucket)",
    )
    data.add_argument("--days", type=int, default=0, help="only the newest N days of the archive (0: all of it)")
    data.add_argument(
        "--reparse",
        action="store_true",
        help="parse every day of the window again (by default a day parsed before, whose objects are the same, is "
        "read back from datasets/_days/)",
    )
    data.add_argument("--json", action="store_true", help="one JSON document")
    data.set_defaults(func=cmd_dataset)

    fail = sub.add_parser("failures", help="the updater's failure queue: list it, or replay it into the feature store")
    fail.add_argument("action", choices=["list", "replay"])
    fail.add_argument("--json", action="store_true", help="list: one JSON document")
    fail.add_argument("--no-progress", action="store_true", help="replay: no progress bar")
    fail.set_defaults(func=cmd_failures)

    keys = sub.add_parser("keys", help="the pseudonymisation key: its versions, or rotate it (profiles stay linked)")
    keys.add_argument("action", choices=["show", "rotate"])
    keys.set_defaults(func=cmd_keys)

    feat = sub.add_parser("features", help="one entity's features in the running local stack's feature store")
    feat.add_argument("entity", choices=["profile", "session", "item", "category", "market"])
    feat.add_argument("id", help="customer id (or visitor id with --anonymous), session, item, category or market")
    feat.add_argument("--anonymous", action="store_true", help="the profile id is a visitor (cookie) id")
    feat.set_defaults(func=cmd_features)

    con = sub.add_parser(
        "console",
        help="the operator's console on this machine (shoppers' lists, similar items, models, drift, experiments)",
    )
    con.add_argument("--port", type=int, default=8090, help="the loopback port (default 8090)")
    con.add_argument("--examples", type=Path, help="a CSV or JSON Lines export whose customer ids the picker offers")
    con.add_argument(
        "--allow-events", action="store_true", help="send views and cart adds from the page to a deployed stack"
    )
    con.set_defaults(func=cmd_console)

    cost = sub.add_parser(
        "cost", help="what the deployed stack costs a month under a load, beside Amazon Personalize for the same load"
    )
    cost.add_argument("--requests-per-s", type=float, nargs="+", default=[1.0, 10.0, 100.0, 500.0])
    cost.add_argument("--events-per-s", type=float, nargs="*", default=[], help="default: twice the request rate")
    cost.add_argument("--shoppers", type=int, default=500_000, help="shoppers with a profile and a precomputed list")
    cost.add_argument("--items", type=int, default=20_000)
    cost.add_argument("--retrain", choices=["schedule", "daily", "weekly", "none"], default="schedule")
    cost.add_argument("--env", default="prod", help="the environment whose synthesized template is priced")
    cost.add_argument("--template", default="", help="a template file (default: cdk.out/<env>/, else synthesized)")
    cost.add_argument(
        "--as-configured",
        action="store_true",
        help="the template's shards and provisioned concurrency, not sized for the load",
    )
    cost.add_argument("--prices", default="", help="a price table (default: the newest for --region, us-east-1)")
    cost.add_argument("--units", default="", help="measured units (default: the ones shipped, see their sources)")
    cost.add_argument("--assume", nargs="*", default=[], metavar="NAME=NUMBER", help="override an assumption")
    cost.add_argument("--summary", action="store_true", help="only the summary table")
    cost.add_argument("--json", action="store_true", help="every line item as JSON")
    cost.set_defaults(func=cmd_cost)

    comp = sub.add_parser("completion", help='a shell completion script: eval "$(shopwise completion bash)"')
    comp.add_argument("shell", choices=["bash"])
    comp.set_defaults(func=cmd_completion)
    for child in subcommands(parser).values():  # every command shows its defaults in its help
        child.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    global _STACK
    args = build_parser().parse_args(argv)
    _STACK = args.stack or None
    if args.profile:
        os.environ["AWS_PROFILE"] = args.profile
    if args.region:
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = args.region
    from shopwise.dal.errors import AWS_ERRORS

    try:
        return int(args.func(args))
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AWS_ERRORS as exc:  # no region, no credentials, access denied: say which, briefly
        where = f" (stack {_STACK}: set --region and --profile, or the AWS_* settings)" if _STACK else ""
        print(f"error: AWS said: {exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
