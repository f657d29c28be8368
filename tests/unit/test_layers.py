"""The layering rules, checked on the source: only data access talks to AWS; the serve function's imports stay
light; every function leaves what its imports made out of the garbage collector's walks."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "layers" / "core" / "shopwise"
AWS_MODULES = ("boto3", "botocore", "pynamodb", "shopwise.dal.aws", "shopwise.dal.pynamo")
# the local runtime's stand-ins for AWS itself (the endpoint, the stream poller, Firehose, the SageMaker runner,
# API Gateway's SigV4 check): they are what the deployed stack gets from AWS, so they speak to it directly
AWS_STAND_INS = {"endpoint.py", "resources.py", "poller.py", "logs.py", "sagemaker.py", "sigv4.py"}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def above_data_access() -> list[Path]:
    core = [p for p in CORE.rglob("*.py") if "dal" not in p.relative_to(CORE).parts]
    local = [p for p in (ROOT / "local" / "shopwise_local").glob("*.py") if p.name not in AWS_STAND_INS]
    jobs = list((ROOT / "sagemaker_jobs").rglob("*.py"))
    lambdas = list((ROOT / "lambdas").rglob("*.py"))
    return sorted(core + local + jobs + lambdas)


def test_nothing_above_data_access_talks_to_aws_directly() -> None:
    modules = above_data_access()
    assert len(modules) > 60  # the walk found the code (a moved folder would make this test vacuous)
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.startswith(AWS_MODULES)) for p in modules}
    assert {path: found for path, found in offenders.items() if found} == {}


def test_data_access_imports_no_domain_logic_above_it() -> None:
    """dal may use the vocabulary (keys, picks, settings, config, the catalog item) but never the logic that uses
    it (serving, ingestion, campaigns, lifecycle)."""
    above = ("shopwise.serving", "shopwise.ingestion", "shopwise.campaigns", "shopwise.lifecycle")
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.startswith(above))
        for p in (CORE / "dal").glob("*.py")
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_every_function_freezes_what_its_imports_made() -> None:
    """Each handler loaded in turn, in a fresh interpreter, as the local runtime (and Lambda) loads it: the objects its
    imports made (about 100,000: a 20-50 ms walk on each full collection, ``tests/bench/bench_heap.py``) are frozen,
    and the collector is left next to nothing (``shopwise.heap``)."""
    names = sorted(p.parent.name for p in (ROOT / "lambdas").glob("*/handler.py"))
    assert len(names) >= 12
    code = (
        "import gc, json, sys\n"
        "from shopwise_local.lambda_runtime import load_handler_module\n"
        "seen = {}\n"
        "for name in sys.argv[1:]:\n"
        "    before = gc.get_freeze_count()\n"
        "    load_handler_module(name)\n"
        "    seen[name] = [gc.get_freeze_count() - before, len(gc.get_objects())]\n"
        "print(json.dumps(seen))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *names],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(seen) == set(names)
    frozen_by, collectable = {n: v[0] for n, v in seen.items()}, {n: v[1] for n, v in seen.items()}
    assert frozen_by[names[0]] > 50_000  # the first handler's imports: the bulk of them
    assert all(frozen > 0 for frozen in frozen_by.values()), frozen_by  # each handler froze what it added
    assert max(collectable.values()) < 1_000, collectable
