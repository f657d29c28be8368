"""Build what the CDK app ships, without Docker:

- ``.build/layers/deps/python``: the request-path dependencies from pyproject.toml (boto3 excepted: the Lambda
  runtime has it), installed by ``pip install --platform manylinux2014_x86_64 --only-binary=:all:
  --python-version 3.12 --implementation cp --target``;
- ``.build/layers/core/python/shopwise``: the core package;
- ``.build/layers/columnar/python``: pyarrow (the ``columnar`` extra) for the functions that write the archive's
  Parquet, installed the same way, without its headers, tests and Cython sources;
- ``.build/sagemaker/sourcedir.tar.gz``: the SageMaker script-mode source directory (train.py, inference.py, drift.py,
  requirements.txt, shopwise_jobs, shopwise);
- ``.build/glue/``: the Spark jobs for AWS Glue — ``dataset.py`` and ``convert.py`` (the entry scripts) and
  ``shopwise.zip`` (the shopwise and shopwise_jobs packages, Glue's ``--extra-py-files``).

Each output is rebuilt only when its inputs changed (a hash of them is kept beside it).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build"
CORE_SRC = ROOT / "layers" / "core" / "shopwise"
JOBS_DIR = ROOT / "sagemaker_jobs"
PLATFORM = "manylinux2014_x86_64"
LAMBDA_PYTHON = "3.12"
RUNTIME_PROVIDED = {"boto3", "botocore"}


def _files(*roots: Path) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
        else:
            found.extend(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return sorted(found)


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _fresh(target: Path, digest: str) -> bool:
    stamp = target / ".digest"
    return stamp.exists() and stamp.read_text() == digest


def lambda_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [
        req for req in project["dependencies"] if req.split("[")[0].split("=")[0].split(">")[0] not in RUNTIME_PROVIDED
    ]
    return names


def build_deps_layer() -> Path:
    target = BUILD / "layers" / "deps"
    requirements = lambda_requirements()
    digest = _digest([], "\n".join([PLATFORM, LAMBDA_PYTHON, *requirements]))
    if _fresh(target, digest):
        return target
    shutil.rmtree(target, ignore_errors=True)
    _pip_install(target, requirements)
    (target / ".digest").write_text(digest)
    return target


def _pip_install(target: Path, requirements: list[str], platform: str = PLATFORM) -> None:
    """Wheels for the Lambda runtime (``platform``, ``LAMBDA_PYTHON``) into ``target/python``, no bytecode."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--platform",
        platform,
        "--only-binary=:all:",
        "--python-version",
        LAMBDA_PYTHON,
        "--implementation",
        "cp",
        "--target",
        str(target / "python"),
        *requirements,
    ]
    subprocess.run(command, check=True)
    for cache in (target / "python").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


COLUMNAR_PLATFORM = "manylinux_2_28_x86_64"
COLUMNAR_STRIP = ("include", "tests", "src")  # pyarrow's folders a function never imports
LAMBDA_UNZIPPED_LIMIT = 250 * 1024**2  # a function's code and layers, unzipped


def build_columnar_layer() -> Path:
    target = BUILD / "layers" / "columnar"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["optional-dependencies"]["columnar"]
    digest = _digest([], "\n".join([COLUMNAR_PLATFORM, LAMBDA_PYTHON, *requirements, *COLUMNAR_STRIP]))
    if _fresh(target, digest):
        return target
    shutil.rmtree(target, ignore_errors=True)
    # pyarrow needs numpy only for pandas conversions; its wheels are manylinux_2_28 now (the Python 3.12 runtime,
    # Amazon Linux 2023, has glibc 2.34)
    _pip_install(target, ["--no-deps", *requirements], COLUMNAR_PLATFORM)
    package = target / "python" / "pyarrow"
    for name in COLUMNAR_STRIP:
        shutil.rmtree(package / name, ignore_errors=True)
    for path in [*package.rglob("*.pyx"), *package.rglob("*.pxd"), *package.rglob("*.pxi")]:
        path.unlink()
    (target / ".digest").write_text(digest)
    return target


def unzipped_size(*roots: Path) -> int:
    return sum(p.stat().st_size for p in _files(*roots))


def build_core_layer() -> Path:
    target = BUILD / "layers" / "core"
    digest = _digest(_files(CORE_SRC))
    if _fresh(target, digest):
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(CORE_SRC, target / "python" / "shopwise", ignore=shutil.ignore_patterns("__pycache__"))
    (target / ".digest").write_text(digest)
    return target


def build_sagemaker_source() -> Path:
    target = BUILD / "sagemaker"
    members = {
        "train.py": JOBS_DIR / "train.py",
        "inference.py": JOBS_DIR / "inference.py",
        "drift.py": JOBS_DIR / "drift.py",
        "requirements.txt": JOBS_DIR / "requirements.txt",
    }
    trees = {"shopwise_jobs": JOBS_DIR / "shopwise_jobs", "shopwise": CORE_SRC}
    inputs = [*members.values(), *_files(*trees.values())]
    digest = _digest(inputs)
    if _fresh(target, digest):
        return target / "sourcedir.tar.gz"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, path in members.items():
            tar.add(path, arcname=name)
        for name, root in trees.items():
            for path in _files(root):
                tar.add(path, arcname=f"{name}/{path.relative_to(root)}")
    (target / "sourcedir.tar.gz").write_bytes(buffer.getvalue())
    (target / ".digest").write_text(digest)
    return target / "sourcedir.tar.gz"


def build_glue_job() -> Path:
    target = BUILD / "glue"
    scripts = {"dataset.py": JOBS_DIR / "glue_dataset.py", "convert.py": JOBS_DIR / "glue_convert.py"}
    trees = {"shopwise_jobs": JOBS_DIR / "shopwise_jobs", "shopwise": CORE_SRC}
    digest = _digest([*scripts.values(), *_files(*trees.values())])
    if _fresh(target, digest):
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name, script in scripts.items():
        shutil.copyfile(script, target / name)
    with zipfile.ZipFile(target / "shopwise.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, root in trees.items():
            for path in _files(root):
                # fixed times: the same sources make the same zip, so the asset's hash moves only with them
                info = zipfile.ZipInfo(f"{name}/{path.relative_to(root)}", date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    (target / ".digest").write_text(digest)
    return target


def main() -> int:
    for step in (build_deps_layer, build_columnar_layer, build_core_layer, build_sagemaker_source, build_glue_job):
        print(f"build: {step.__name__.removeprefix('build_').replace('_', ' ')} -> {step().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
