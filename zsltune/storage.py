"""Where sweeps are stored: a local folder, ``file://``, or ``s3://bucket/prefix``, through pyarrow filesystems.

``--storage`` (or ``$ZSLTUNE_RESULTS``) is parsed once into a :class:`Location`: the pyarrow filesystem and the path
inside it. Ray Tune gets the same pair (``storage_path`` + ``storage_filesystem``), so trial folders and checkpoints
go there from every node. The driver's own files (``trials.parquet``, ``epochs.parquet``, the Optuna journal,
``zsltune.json``) are written to a local folder first (the folder itself where storage is local; a driver-side
mirror under ``$TMPDIR/zsltune-remote/`` otherwise) and uploaded from there (:meth:`Location.upload`).

S3: the endpoint is ``$AWS_ENDPOINT_URL_S3`` or ``$AWS_ENDPOINT_URL`` where set (MinIO, moto, ...), or the query of
the URI (``s3://bucket/prefix?endpoint_override=host:port&scheme=http&region=...``, pyarrow's names); credentials as
boto finds them (environment, ``~/.aws``, instance role). Other schemes are refused with one line. No Ray import.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow.fs as pafs

from zsltune.errors import ConfigError

SCHEMES = ("file", "s3")
#: where a sweep on remote storage keeps its driver-side files (the same absolute path on any Linux driver, so the
#: Optuna journal path pickled into Tune's searcher state still resolves after ``--resume`` on another machine)
MIRROR_ROOT = Path(tempfile.gettempdir()) / "zsltune-remote"


@dataclass(frozen=True)
class Location:
    """A folder on some filesystem: ``uri`` for people, ``(fs, path)`` for pyarrow and Ray."""

    uri: str
    fs: pafs.FileSystem
    path: str
    option: str = field(default="--storage", compare=False)  # what set it, for error lines (or ZSLTUNE_RESULTS=)

    @property
    def local(self) -> Path | None:
        """The folder itself where the filesystem is this machine's, else None."""
        return Path(self.path) if isinstance(self.fs, pafs.LocalFileSystem) else None

    def child(self, name: str) -> Location:
        return replace(self, uri=f"{self.uri.rstrip('/')}/{name}", path=f"{self.path.rstrip('/')}/{name}")

    @property
    def named(self) -> str:
        """``--storage URI`` or ``ZSLTUNE_RESULTS=URI``: how error lines name it."""
        return f"{self.option}{self.uri}" if self.option.endswith("=") else f"{self.option} {self.uri}"

    def mirror(self) -> Path:
        """The driver-side folder of this location: the folder itself if local, else a stable path under /tmp."""
        if self.local is not None:
            return self.local
        return MIRROR_ROOT / hashlib.sha256(self.uri.encode()).hexdigest()[:16] / Path(self.path).name

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(f"{self.path}/{name}").type != pafs.FileType.NotFound

    def upload(self, names: Iterable[str]) -> None:
        """Copy the mirror's files ``names`` (those that exist) to this location; nothing to do where it is local."""
        if self.local is not None:
            return
        src = self.mirror()
        for name in names:
            if (src / name).is_file():
                # one PUT per file: a reader of the bucket sees the old object or the new one, never half of one
                pafs.copy_files(str(src / name), f"{self.path}/{name}", destination_filesystem=self.fs)

    def fresh_mirror(self) -> Path:
        """The mirror, emptied where it is a copy (a copy left by an earlier sweep of the same name must not leak)."""
        dst = self.mirror()
        if self.local is None:
            shutil.rmtree(dst, ignore_errors=True)
        return dst

    def download(self, names: Iterable[str]) -> Path:
        """Fetch ``names`` (those that exist) into an emptied mirror; returns the mirror."""
        dst = self.fresh_mirror()
        if self.local is not None:
            return dst
        dst.mkdir(parents=True, exist_ok=True)
        for name in names:
            if self.exists(name):
                pafs.copy_files(f"{self.path}/{name}", str(dst / name), source_filesystem=self.fs)
        return dst

    def size(self) -> tuple[int, int]:
        """(bytes, files) under this folder."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True, allow_not_found=True))
        files = [i for i in infos if i.type == pafs.FileType.File]
        return sum(i.size or 0 for i in files), len(files)


def human_size(n: float) -> str:
    """Binary units, as ``du -h`` counts: 155,519,126 bytes is "148.3 MiB"."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def parse_storage(value: str, *, option: str = "--storage") -> Location:
    """The :class:`Location` of ``value`` (a path, ``file://`` or ``s3://`` URI); nothing is created or contacted."""
    where = f"{option}{value}" if option.endswith("=") else f"{option} {value}"
    parts = urlsplit(value)
    scheme = parts.scheme.lower() if "://" in value else ""
    if scheme and scheme not in SCHEMES:
        raise ConfigError(
            f"{where}: the '{scheme}://' scheme is not supported; use a folder path, file:// or s3:// "
            f"(a shared NFS/EFS folder works on every cloud)"
        )
    if scheme == "s3":
        return _s3_location(value, parts, where, option)
    raw = parts.path if scheme == "file" else value
    if scheme == "file" and parts.netloc not in ("", "localhost"):
        raise ConfigError(f"{where}: file:// names this machine's files; write file:///abs/path")
    path = Path(raw).expanduser().resolve()
    return Location(str(path), pafs.LocalFileSystem(), str(path), option)


def _s3_location(value: str, parts: object, where: str, option: str) -> Location:
    bucket, prefix = parts.netloc, parts.path.strip("/")  # type: ignore[attr-defined]
    if not bucket:
        raise ConfigError(f"{where}: an S3 URI names a bucket, e.g. s3://my-bucket/zsltune_results")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}  # type: ignore[attr-defined]
    known = {"endpoint_override", "scheme", "region"}
    if set(query) - known:
        raise ConfigError(
            f"{where}: unknown URI option {sorted(set(query) - known)[0]!r}; valid: {', '.join(sorted(known))}"
        )
    endpoint = (
        query.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    scheme = query.get("scheme")
    if endpoint and "://" in endpoint:  # pyarrow wants host:port and the scheme apart
        ep = urlsplit(endpoint)
        endpoint, scheme = ep.netloc, scheme or ep.scheme
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None and endpoint is None:
        try:  # a bucket outside the default region answers with a redirect pyarrow does not follow
            region = pafs.resolve_s3_region(bucket)
        except OSError as exc:
            raise ConfigError(f"{where}: {_unreachable(exc, 'S3')}") from None
    fs = pafs.S3FileSystem(
        region=region or "us-east-1",
        endpoint_override=endpoint,
        scheme=scheme or "https",
        connect_timeout=5,
        request_timeout=30,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
    )
    clean = f"s3://{bucket}/{prefix}".rstrip("/")
    return Location(clean, fs, f"{bucket}/{prefix}".rstrip("/"), option)


def _unreachable(exc: BaseException, what: str) -> str:
    reason = " ".join(str(exc).split())[:200]
    return (
        f"cannot reach {what} ({reason}); check the endpoint (AWS_ENDPOINT_URL or ?endpoint_override=), the "
        f"credentials and the network, or use a local or shared folder"
    )


def check_writable(loc: Location) -> None:
    """Create the storage folder (or check the bucket) now, so a bad ``--storage`` fails before Ray starts."""
    local = loc.local
    if local is not None:
        try:
            local.mkdir(parents=True, exist_ok=True)
            probe = local / f".zsltune-probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"{loc.named}: cannot create or write this folder ({exc.strerror or exc}); pass a folder you "
                f"can write to (or set ZSLTUNE_RESULTS)"
            ) from None
        return
    bucket = loc.path.split("/", 1)[0]
    try:
        info = loc.fs.get_file_info(bucket)
    except OSError as exc:
        raise ConfigError(f"{loc.named}: {_unreachable(exc, 'the S3 endpoint')}") from None
    if info.type != pafs.FileType.Directory:
        raise ConfigError(f"{loc.named}: bucket {bucket!r} does not exist; create it first (aws s3 mb s3://{bucket})")
    try:
        probe = f"{loc.path}/.zsltune-probe-{os.getpid()}"
        with loc.fs.open_output_stream(probe) as f:
            f.write(b"")
        loc.fs.delete_file(probe)
    except OSError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{loc.named}: cannot write to the bucket ({reason}); check the credentials") from None


__all__ = ["MIRROR_ROOT", "SCHEMES", "Location", "check_writable", "human_size", "parse_storage"]
