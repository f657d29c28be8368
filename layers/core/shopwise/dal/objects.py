"""S3 objects: the event archive, catalog snapshots, batch-transform outputs."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from shopwise import archive
from shopwise.dal.aws import client


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def list_keys(bucket: str, prefix: str) -> list[str]:
    return [key for key, _size, _etag in list_objects(bucket, prefix)]


def list_objects(bucket: str, prefix: str, start_after: str = "") -> list[tuple[str, int, str]]:
    """(key, size, ETag) of every object under ``prefix`` (after ``start_after``, in key order)."""
    found: list[tuple[str, int, str]] = []
    extra = {"StartAfter": start_after} if start_after else {}
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **extra):
        found.extend((obj["Key"], int(obj["Size"]), str(obj["ETag"])) for obj in page.get("Contents", []))
    return found


def delete_prefix(bucket: str, prefix: str) -> int:
    """Every object under ``prefix`` deleted (1,000 a call); how many."""
    keys = list_keys(bucket, prefix)
    for n in range(0, len(keys), 1000):
        chunk = [{"Key": key} for key in keys[n : n + 1000]]
        client("s3").delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
    return len(keys)


def newest_key(bucket: str, prefix: str, suffix: str = "") -> str | None:
    """The most recently written key under ``prefix`` that ends with ``suffix`` (a listing, no reads)."""
    newest: tuple[Any, str] | None = None
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(suffix) and (newest is None or obj["LastModified"] > newest[0]):
                newest = (obj["LastModified"], obj["Key"])
    return newest[1] if newest else None


class _Body(io.RawIOBase):
    """An S3 body as a raw stream, so the standard library's buffered and text readers can read it."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.body.close()
        super().close()


def open_object(bucket: str, key: str) -> io.BufferedReader:
    """The object's body as a buffered stream, read as it arrives: a file of any size is never held whole."""
    return io.BufferedReader(_Body(client("s3").get_object(Bucket=bucket, Key=key)["Body"]), 1024 * 1024)


def object_size(bucket: str, key: str) -> int:
    return int(client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"])


def put_bytes(bucket: str, key: str, body: bytes) -> None:
    client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def get_bytes(bucket: str, key: str) -> bytes | None:
    """The object's body, or None when there is no such object."""
    try:
        return bytes(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except client("s3").exceptions.NoSuchKey:
        return None


PAGE_READ = 1 << 18  # bytes a ranged read of lines asks for at a time


def read_line_range(bucket: str, key: str, offset: int, count: int) -> tuple[list[bytes], int, bool]:
    """Up to ``count`` whole lines of an object from byte ``offset``, which must be 0 or a line's start (the byte
    before it a newline: ValueError otherwise), by ranged reads of ``PAGE_READ`` bytes — never the whole object:
    (the lines, the offset after them, whether any line follows). LookupError when there is no such object."""
    s3 = client("s3")
    start = max(offset - 1, 0)  # the byte before a line's start is the newline that ends the line before it
    buffer, position, total = b"", start, None
    lines: list[bytes] = []
    while len(lines) < count and (total is None or position < total):
        try:
            got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={position}-{position + PAGE_READ - 1}")
        except s3.exceptions.NoSuchKey:
            raise LookupError(f"s3://{bucket}/{key} does not exist") from None
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "InvalidRange":  # past the end (or an empty object)
                raise
            total = position
            break
        raw = bytes(got["Body"].read())
        total = int(str(got["ContentRange"]).rpartition("/")[2])
        body = raw
        if position == start and offset > 0:
            if raw[:1] != b"\n":
                raise ValueError(f"byte {offset} of s3://{bucket}/{key} does not start a line")
            body = raw[1:]
        position += len(raw)
        buffer += body
        *complete, buffer = buffer.split(b"\n")
        lines += complete
    if buffer and (total is None or position >= total):
        lines.append(buffer)  # the object's last line, without a newline
    taken = lines[:count]
    end = offset + sum(len(line) + 1 for line in taken)
    return taken, end, end < (total if total is not None else end)


def delete_key(bucket: str, key: str) -> None:
    client("s3").delete_object(Bucket=bucket, Key=key)


def upload_file(path: Path, bucket: str, key: str) -> None:
    client("s3").upload_file(str(path), bucket, key)


def download_prefix(uri: str, target: Path) -> int:
    """Every object under an s3:// prefix into ``target``, keeping the key's path below the prefix; how many."""
    bucket, prefix = parse_s3_uri(uri)
    return download_keys(bucket, list_keys(bucket, prefix), prefix, target)


def download_keys(bucket: str, keys: list[str], prefix: str, target: Path) -> int:
    """These objects (under ``prefix``) into ``target``, keeping each key's path below the prefix; how many."""
    for key in keys:
        relative = key[len(prefix) :].lstrip("/") or Path(key).name
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        client("s3").download_file(bucket, key, str(path))
    return len(keys)


READ_CHUNK = 1 << 20  # bytes read from S3 at a time


def read_lines(bucket: str, key: str) -> Iterator[bytes]:
    """An object's non-blank lines, as bytes (gunzipped if the key ends in .gz), streamed: a chunk of the object
    in memory at a time, never the whole of it (a batch-transform output object is hundreds of MB)."""
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    try:
        lines: Iterable[bytes] = (
            gzip.GzipFile(fileobj=body, mode="rb") if key.endswith(".gz") else body.iter_lines(READ_CHUNK)
        )
        for line in lines:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line
    finally:
        body.close()


def read_archive(bucket: str, key: str) -> Iterator[dict[str, Any] | None]:
    """The event records of one archive object, Parquet or JSON Lines (``shopwise.archive.read_records``; None for
    a line that is not JSON). A Parquet object is read whole first (its footer is at the end): Firehose's are at
    most its 128 MB buffer, the importer's ``ARCHIVE_CHUNK`` events; a JSON one streams."""
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    try:
        handle: Any = io.BytesIO(body.read()) if key.endswith(archive.PARQUET) else io.BufferedReader(_Body(body))
        yield from archive.read_records(key, handle)
    finally:
        body.close()


def read_json_lines(bucket: str, key: str) -> Iterator[dict[str, Any]]:
    for line in read_lines(bucket, key):
        yield json.loads(line)


def write_json_lines(bucket: str, key: str, rows: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(row, separators=(",", ":")) for row in rows]
    body = ("\n".join(lines) + "\n").encode() if lines else b""
    if key.endswith(".gz"):
        body = gzip.compress(body, mtime=0)
    client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return len(lines)


def read_tar_member(bucket: str, key: str, name: str) -> bytes:
    """One file of a .tar.gz object (a training job's output.tar.gz), by its name at any depth."""
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.rsplit("/", 1)[-1] == name:
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read()
    raise FileNotFoundError(f"s3://{bucket}/{key} holds no {name}")


def read_job_output(model_uri: str, name: str) -> bytes:
    """A file of a SageMaker job's output.tar.gz, which sits beside its model.tar.gz (``model_uri``)."""
    bucket, key = parse_s3_uri(model_uri)
    return read_tar_member(bucket, key.rsplit("/", 1)[0] + "/output.tar.gz", name)


def list_versions(bucket: str) -> Iterator[tuple[str, str, bool]]:
    """(key, version id, is latest) of every object version in the bucket ("null" versions in an unversioned one)."""
    for page in client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            yield str(v["Key"]), str(v.get("VersionId") or "null"), bool(v.get("IsLatest", True))


def get_version(bucket: str, key: str, version_id: str) -> bytes:
    ask: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id != "null":
        ask["VersionId"] = version_id
    return bytes(client("s3").get_object(**ask)["Body"].read())


def delete_version(bucket: str, key: str, version_id: str) -> None:
    """Delete one version for good (a delete without a version only hides it behind a marker)."""
    client("s3").delete_object(Bucket=bucket, Key=key, VersionId=version_id)
