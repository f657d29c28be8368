"""What the SageMaker inference toolkit does in a batch-transform container, for one machine: load the user's
``inference.py``, call ``model_fn`` once, then for each input object and each line (SplitType=Line,
BatchStrategy=SingleRecord) ``input_fn`` -> ``predict_fn`` -> ``output_fn``, assembled by line into
``<input-name>.out``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

CONTENT_TYPE = "application/jsonlines"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--input-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--program", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("inference", args.program)
    assert spec and spec.loader
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    model = program.model_fn(str(args.model_dir))
    max_bytes = int(os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "6")) * 1024 * 1024
    for path in sorted(p for p in args.input_dir.rglob("*") if p.is_file()):
        target = args.output_dir / path.relative_to(args.input_dir)
        target = target.with_name(target.name + ".out")
        target.parent.mkdir(parents=True, exist_ok=True)
        rows = 0
        with path.open("rb") as source, target.open("w") as out:
            for line in source:
                if not line.strip():
                    continue
                if len(line) > max_bytes:
                    raise ValueError(f"{path.name}: a record of {len(line)} bytes exceeds MaxPayloadInMB")
                answer = program.output_fn(
                    program.predict_fn(program.input_fn(line, CONTENT_TYPE), model), CONTENT_TYPE
                )
                out.write(answer)
                rows += answer.count("\n")
        print(f"{path.name}: {rows} rows -> {target.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
