"""Names and paths the CDK app uses, in one place. Resource names and per-environment settings come from
``shopwise.config`` (shared with the local runtime)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = REPO_ROOT / "lambdas"
BUILD_DIR = REPO_ROOT / ".build"
CORE_LAYER_DIR = BUILD_DIR / "layers" / "core"
DEPS_LAYER_DIR = BUILD_DIR / "layers" / "deps"
COLUMNAR_LAYER_DIR = BUILD_DIR / "layers" / "columnar"
GLUE_DIR = BUILD_DIR / "glue"  # the data set job's entry script and packages (layers/build.py)
SAGEMAKER_SOURCE_TARBALL = BUILD_DIR / "sagemaker" / "sourcedir.tar.gz"

LAMBDA_PYTHON = "python3.12"
# The SageMaker framework image that runs the training and inference scripts (script mode). The account of the
# image registry differs by region; see the SageMaker docs ("Docker Registry Paths and Example Code").
SKLEARN_IMAGE_ACCOUNTS = {
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-2": "246618743249",
    "eu-west-1": "141502667606",
    "eu-central-1": "492215442770",
    "ap-southeast-2": "783357654285",
}
SKLEARN_REPOSITORY = "sagemaker-scikit-learn"
SKLEARN_IMAGE_TAG = "1.4-2-cpu-py3"
