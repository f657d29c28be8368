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


# what the jobs' images have before their own packages are installed (Glue's "Python modules already provided"
# that shopwise imports, and PySpark itself); everything else must be installed by the stack's own lists
GLUE_PROVIDED = {"boto3", "botocore", "numpy", "pandas", "pyarrow", "pyspark"}
JOB_ENTRIES = {
    "sagemaker": [
        "shopwise_jobs.training",
        "shopwise_jobs.inference",
        "shopwise_jobs.drift_job",
        "shopwise_jobs.imports",
        "shopwise_jobs.purge",
    ],
    "glue": ["shopwise_jobs.spark_dataset", "shopwise_jobs.spark_convert"],
}


def _distribution(name: str) -> str:
    return name.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower().replace("_", "-")


def _requires(name: str) -> list[str] | None:
    from importlib.metadata import PackageNotFoundError, requires

    try:
        return requires(name)
    except PackageNotFoundError:
        return None


def test_every_package_the_jobs_import_is_installed_by_their_stack() -> None:
    """The SageMaker jobs install ``sagemaker_jobs/requirements.txt``; the Glue jobs get ``--additional-python-modules``
    (``shopwise_cdk.dataset.PYTHON_MODULES``) over the image's own. Each third-party package that a shopwise module
    loaded by a job's entry imports at its top is in one of them (a package missing there fails the job at import,
    in AWS only: the local stack runs the jobs in this environment, which has everything)."""
    from importlib.metadata import packages_distributions

    from shopwise_cdk.dataset import PYTHON_MODULES

    requirements = (ROOT / "sagemaker_jobs" / "requirements.txt").read_text().splitlines()
    installed = {
        "sagemaker": {_distribution(line) for line in requirements if line.split("#")[0].strip()},
        "glue": {_distribution(m) for m in PYTHON_MODULES.split(",")} | GLUE_PROVIDED,
    }
    for declared in installed.values():  # and what those install with them
        declared |= {_distribution(r) for n in list(declared) for r in (_requires(n) or []) if "extra ==" not in r}
    distributions = packages_distributions()
    code = (
        "import importlib, json, sys\n"
        "for n in sys.argv[1:]: importlib.import_module(n)\n"
        "own = [m for n, m in list(sys.modules.items()) if n.split('.')[0] in ('shopwise', 'shopwise_jobs')]\n"
        "print(json.dumps([m.__file__ for m in own if getattr(m, '__file__', None)]))\n"
    )
    for runtime, entries in JOB_ENTRIES.items():
        result = subprocess.run(
            [sys.executable, "-c", code, *entries],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sagemaker_jobs"), *filter(None, sys.path)])},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        loaded = [Path(f) for f in json.loads(result.stdout.strip().splitlines()[-1])]
        assert len(loaded) > 10
        imported: dict[str, set[str]] = {}
        for path in loaded:
            tree = ast.parse(path.read_text(), str(path))
            for node in tree.body:  # the module's top: what loading it needs
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module]
                    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    else []
                )
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top.startswith("shopwise") or top == "__future__":
                        continue
                    for dist in distributions.get(top, [top]):
                        imported.setdefault(_distribution(dist), set()).add(path.name)
        missing = {d: sorted(f) for d, f in imported.items() if d not in installed[runtime]}
        assert not missing, f"{runtime}: imported, not installed: {missing}"
