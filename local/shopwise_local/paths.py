"""Where the repository's deployable parts live, and where the local stack keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = REPO_ROOT / "lambdas"
SAGEMAKER_DIR = REPO_ROOT / "sagemaker_jobs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def state_dir() -> Path:
    """The local stack's working folder (SHOPWISE_HOME, default .local/ in the repository)."""
    path = Path(os.environ.get("SHOPWISE_HOME", str(REPO_ROOT / ".local")))
    path.mkdir(parents=True, exist_ok=True)
    return path
