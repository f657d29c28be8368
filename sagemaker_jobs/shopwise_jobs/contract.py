"""The SageMaker script-mode container contract, read in one place.

SageMaker (and ``shopwise_local.sagemaker``, which plays SageMaker locally) provides:
- ``/opt/ml/input/config/hyperparameters.json`` (string values), also as ``SM_HPS`` and as ``--key value`` args;
- channels in ``/opt/ml/input/data/<channel>/``, also as ``SM_CHANNEL_<NAME>``;
- ``SM_MODEL_DIR`` (tarred to model.tar.gz), ``SM_OUTPUT_DATA_DIR`` (tarred to output.tar.gz), ``SM_OUTPUT_DIR``
  (a failure reason goes to its ``failure`` file), ``TRAINING_JOB_NAME``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPT_ML = Path("/opt/ml")


def _args_to_dict(argv: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    it = iter(argv)
    for token in it:
        if not token.startswith("--"):
            raise ValueError(f"unexpected argument {token!r}: hyperparameters come as --name value")
        name, eq, value = token[2:].partition("=")
        values[name] = value if eq else next(it, "")
    return values


def _decode(value: Any) -> str:
    # the SageMaker SDK JSON-encodes hyperparameter values; raw strings pass through
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        return value if isinstance(decoded, dict | list) else str(decoded)
    return str(value)


@dataclass(frozen=True)
class TrainingContract:
    hyperparameters: dict[str, str]
    model_dir: Path
    output_data_dir: Path
    output_dir: Path
    channels: dict[str, Path]
    job_name: str
    hosts: tuple[str, ...] = ("algo-1",)  # every instance of the job (SM_HOSTS)
    current_host: str = "algo-1"  # this one (SM_CURRENT_HOST)

    @classmethod
    def from_environment(cls, argv: list[str], env: Mapping[str, str] | None = None) -> TrainingContract:
        env = os.environ if env is None else env
        root = Path(env.get("SM_OPT_ML", str(OPT_ML)))
        hps: dict[str, Any] = {}
        hp_file = root / "input/config/hyperparameters.json"
        if "SM_HPS" in env:
            hps.update(json.loads(env["SM_HPS"]))
        elif hp_file.exists():
            hps.update(json.loads(hp_file.read_text()))
        hps.update(_args_to_dict(argv))
        hyperparameters = {k: _decode(v) for k, v in hps.items() if not k.startswith("sagemaker_")}
        channels = {
            key.removeprefix("SM_CHANNEL_").lower(): Path(value)
            for key, value in env.items()
            if key.startswith("SM_CHANNEL_")
        }
        data_root = root / "input/data"
        if data_root.is_dir():
            for child in data_root.iterdir():
                channels.setdefault(child.name, child)
        return cls(
            hyperparameters=hyperparameters,
            model_dir=Path(env.get("SM_MODEL_DIR", str(root / "model"))),
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", str(root / "output/data"))),
            output_dir=Path(env.get("SM_OUTPUT_DIR", str(root / "output"))),
            channels=channels,
            job_name=env.get("TRAINING_JOB_NAME", f"local-{time.strftime('%Y%m%dT%H%M%S')}"),
            hosts=tuple(json.loads(env.get("SM_HOSTS", '["algo-1"]'))),
            current_host=env.get("SM_CURRENT_HOST", "algo-1"),
        )

    def channel(self, name: str) -> Path:
        path = self.channels.get(name)
        if path is None or not path.is_dir():
            raise FileNotFoundError(
                f"input channel {name!r} is missing: set SM_CHANNEL_{name.upper()} or fill "
                f"/opt/ml/input/data/{name}/ (channels present: {', '.join(sorted(self.channels)) or 'none'})"
            )
        return path

    def optional_channel(self, name: str) -> Path | None:
        path = self.channels.get(name)
        return path if path is not None and path.is_dir() else None

    def fail(self, exc: BaseException) -> None:
        """Write the reason where SageMaker reads it (DescribeTrainingJob's FailureReason)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        reason = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
        (self.output_dir / "failure").write_text(reason[:1024])


def run_job(job: Callable[[TrainingContract], Any], argv: list[str] | None = None) -> int:
    """A script-mode entrypoint: the contract from the environment and the arguments, the job run on it, and a
    failure's reason written where SageMaker reads it before the exception ends the process."""
    contract = TrainingContract.from_environment(sys.argv[1:] if argv is None else argv)
    try:
        job(contract)
    except Exception as exc:
        contract.fail(exc)
        raise
    return 0
