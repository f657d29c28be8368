"""The purge job (SageMaker, script mode, the training image; ``shopwise.privacy.purge`` has the whole run): every
object version in the archive and the artifacts bucket that names an erased shopper, rewritten without them.

Hyperparameters: ``plan_bucket`` and ``plan_key`` (the run's plan: blinded targets, when each was erased, the first
archive day that can hold them), ``buckets`` (comma-separated). With several instances each takes the keys whose
CRC32 falls to it, so N instances read 1/N of the data each; each writes its tally beside the plan.

What each kind of object loses:
- JSON Lines and CSV (archived events, Firehose failure records, transform outputs, campaign exports): the lines
  that name a target (events by alias and time, anything else by alias);
- a model folder (model.tar.gz): the targets' rows of the user index and the history matrix, and of any Parquet
  table (the feature snapshot), and the lines of any text file that name them;
- Parquet: archived events (``shopwise.archive``'s table) by alias and time, as their JSON lines; the data set
  build's kept parse of each archive day (``datasets/_days/``) by the same rule, from each row's event's aliases
  and time; any other table the rows whose alias columns name a target.
The latest version of a changed object is replaced; an older version that names a target is deleted. Archive days
before the plan's first day are not read (nothing of the targets can be there).
"""

from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm import tqdm

from shopwise import archive
from shopwise.config import ARCHIVE_EVENTS_PREFIX, ERASURES_PREFIX, PARSED_DAYS_PREFIX
from shopwise.dal.objects import delete_version, get_version, list_versions, put_bytes
from shopwise.privacy.purge import load_plan, plan_targets, scrub_lines, tally_key
from shopwise.privacy.tombstones import ALIAS_FIELDS, Targets
from shopwise_jobs.artifacts import load_matrix, save_csr
from shopwise_jobs.contract import TrainingContract, run_job

BINARY = (".npy", ".npz")  # arrays: no ids in them (the user index beside them says whose rows they are)
_DAY = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/")


@dataclass
class Tally:
    objects_read: int = 0
    objects_skipped: int = 0  # archive days before the plan's first day, binary members
    objects_rewritten: int = 0
    versions_deleted: int = 0
    lines_removed: int = 0
    rows_removed: int = 0  # user index / history / Parquet rows
    bytes_read: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Version:
    bucket: str
    key: str
    version_id: str  # "null" in an unversioned bucket
    latest: bool


def versions(bucket: str, share: tuple[int, int] = (0, 1)) -> Iterator[Version]:
    """Every object version of the bucket this instance takes (``share``: its index and the instance count), the
    purge's own objects left out."""
    index, count = share
    for key, version_id, latest in list_versions(bucket):
        if key.startswith(ERASURES_PREFIX) or zlib.crc32(key.encode()) % count != index:
            continue
        yield Version(bucket, key, version_id, latest)


def scrub_archive(body: bytes, targets: Targets) -> tuple[bytes | None, int]:
    """An archive Parquet object without the events of a target from before their erasure (what the alias sent
    afterwards is a new shopper's): the rule JSON lines follow (``Targets.event``)."""
    records = [r for r in archive.read_records(archive.PARQUET, io.BytesIO(body)) if r is not None]
    kept = [r for r in records if not targets.event(r)]
    if len(kept) == len(records):
        return None, 0
    return archive.encode_parquet(kept), len(records) - len(kept)


def scrub_parsed(body: bytes, targets: Targets) -> tuple[bytes | None, int]:
    """A kept parse of an archive day (``spark_dataset``'s rows: interactions, consent entries, the snapshot's
    event records, markers) without the rows of a target's events from before their erasure: the archive's rule,
    by the aliases and time each row keeps of its event. Its schema unchanged (Spark reads it back)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(body))
    aliases, at = table.column("aliases").to_pylist(), table.column("at").to_pylist()
    hit = [bool(a) and targets.named(a, t) for a, t in zip(aliases, at, strict=True)]
    if not any(hit):
        return None, 0
    out = io.BytesIO()
    pq.write_table(table.filter(pa.array([not h for h in hit])), out)
    return out.getvalue(), sum(hit)


def scrub_parquet(body: bytes, targets: Targets) -> tuple[bytes | None, int]:
    """A Parquet table without the rows whose alias columns name a target: a profile id column ("c:...", "a:...")
    or an event's id fields (bare pseudonyms)."""
    frame = pd.read_parquet(io.BytesIO(body))
    hit = np.zeros(len(frame), dtype=bool)
    for column in frame.columns:
        values = frame[column]
        if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
            continue
        kind = ALIAS_FIELDS.get(str(column))
        if kind:
            hit |= values.map(lambda v, k=kind: isinstance(v, str) and targets.alias(f"{k}:{v}")).to_numpy(bool)
        else:
            hit |= values.map(lambda v: isinstance(v, str) and targets.alias(v)).to_numpy(bool)
    if not hit.any():
        return None, 0
    out = io.BytesIO()
    frame[~hit].to_parquet(out, index=False)
    return out.getvalue(), int(hit.sum())


def scrub_model_dir(directory: Path, targets: Targets, tally: Tally) -> bool:
    """A model folder (or any unpacked tar) without the targets: the user index and its history rows, Parquet
    rows, text lines. Whether anything changed."""
    changed = False
    users_file, history_file = directory / "users.json", directory / "history.npz"  # (.npz: the layout of before)
    if users_file.exists():
        users = json.loads(users_file.read_text())
        keep = np.array([not targets.alias(str(u)) for u in users], dtype=bool)
        if not keep.all():
            users_file.write_text(json.dumps([u for u, k in zip(users, keep, strict=True) if k]))
            if history_file.exists() or (directory / "history.csr").exists():
                kept = load_matrix(directory / "history")[np.flatnonzero(keep)]  # a copy: the files are rewritten
                if history_file.exists():
                    sparse.save_npz(history_file, kept)
                else:
                    save_csr(directory / "history.csr", kept)
            tally.rows_removed += int((~keep).sum())
            changed = True
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if path in (users_file, history_file) or path.suffix in BINARY:
            continue
        body = path.read_bytes()
        if body[:4] == b"PAR1":
            new, rows = scrub_parquet(body, targets)
            tally.rows_removed += rows
        else:
            new, lines = scrub_lines(body, targets)
            tally.lines_removed += lines
        if new is not None:
            path.write_bytes(new)
            changed = True
    return changed


def scrub_tar(body: bytes, targets: Targets, tally: Tally) -> bytes | None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            names = [m.name for m in tar.getmembers()]
            tar.extractall(root, filter="data")
        if not scrub_model_dir(root, targets, tally):
            return None
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for name in names:
                tar.add(root / name, arcname=name, recursive=False)
        return out.getvalue()


def scrub(key: str, body: bytes, targets: Targets, tally: Tally) -> bytes | None:
    """The object without the targets, or None when it names none of them."""
    if key.endswith((".tar.gz", ".tgz", ".tar")):
        return scrub_tar(body, targets, tally)
    if body[:4] == b"PAR1":
        if key.startswith(ARCHIVE_EVENTS_PREFIX):
            new, rows = scrub_archive(body, targets)
        elif key.startswith(PARSED_DAYS_PREFIX):
            new, rows = scrub_parsed(body, targets)
        else:
            new, rows = scrub_parquet(body, targets)
        tally.rows_removed += rows
        return new
    new, lines = scrub_lines(body, targets)
    tally.lines_removed += lines
    return new


def purge_version(version: Version, targets: Targets, since_day: str, tally: Tally) -> None:
    day = _DAY.search(version.key)
    if version.key.endswith(BINARY) or (
        since_day
        and version.key.startswith((ARCHIVE_EVENTS_PREFIX, PARSED_DAYS_PREFIX))  # an archive day, or its kept parse
        and day
        and day.group(1) < since_day
    ):
        tally.objects_skipped += 1
        return
    body = get_version(version.bucket, version.key, version.version_id)
    tally.objects_read += 1
    tally.bytes_read += len(body)
    new = scrub(version.key, body, targets, tally)
    if new is None:
        return
    if version.latest:
        put_bytes(version.bucket, version.key, new)
        tally.objects_rewritten += 1
    if version.version_id != "null":  # the old version, current or not, keeps the shopper: it goes
        delete_version(version.bucket, version.key, version.version_id)
        tally.versions_deleted += 1


def run(contract: TrainingContract) -> Tally:
    hp = contract.hyperparameters
    doc = load_plan(hp["plan_bucket"], hp["plan_key"])
    targets = plan_targets(doc)
    share = (contract.hosts.index(contract.current_host), len(contract.hosts))
    tally = Tally()
    started = time.perf_counter()
    for bucket in [b for b in hp["buckets"].split(",") if b]:
        found = list(versions(bucket, share))
        for version in tqdm(found, desc=f"purge {bucket}", unit="object", mininterval=5, file=sys.stdout):
            purge_version(version, targets, str(doc.get("since_day", "")), tally)
    tally.seconds = round(time.perf_counter() - started, 3)
    summary = asdict(tally)
    put_bytes(hp["plan_bucket"], tally_key(str(doc["run"]), contract.current_host), json.dumps(summary).encode())
    contract.output_data_dir.mkdir(parents=True, exist_ok=True)
    (contract.output_data_dir / "purge.json").write_text(json.dumps(summary))
    for name, value in summary.items():
        print(f"purge {name}={value}", flush=True)
    return tally


def main(argv: list[str] | None = None) -> int:
    return run_job(run, argv)
