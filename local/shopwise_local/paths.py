"""Where the repository's deployable parts live, and where the local stack keeps its state."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = REPO_ROOT / "lambdas"
SAGEMAKER_DIR = REPO_ROOT / "sagemaker_jobs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def code_version(root: Path = REPO_ROOT) -> str:
    """The commit a checkout is at (what the registry records as a version's code), or "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def state_dir() -> Path:
    """The local stack's working folder (SHOPWISE_HOME, default .local/ in the repository)."""
    path = Path(os.environ.get("SHOPWISE_HOME", str(REPO_ROOT / ".local")))
    path.mkdir(parents=True, exist_ok=True)
    return path
