"""The data directory and checksum-verified downloads of public data files.

:func:`fetch` resolves a :class:`RemoteFile` from a user-given local copy, the data
directory, or a download (in that order) and verifies its checksum every time. Files
whose publisher gives no checksum use *trust on first use*: the sha256 of the first copy
that passes the loader's strict format validation is recorded in a ``<file>.sha256``
sidecar (:func:`trust_on_first_use`) and every later copy must match it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from mialens.errors import ChecksumError, DownloadError
from mialens.io import file_mode

if TYPE_CHECKING:
    from rich.progress import Progress

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def data_dir() -> Path:
    """Where downloaded files and parsed caches live.

    ``$MIALENS_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/mialens/data``, else
    ``~/.cache/mialens/data``. The folder is created only when something is written.
    """
    if env := os.environ.get("MIALENS_DATA_DIR"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative paths are invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "mialens" / "data"


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and not value.strip("0123456789abcdef")


def _check_hex(value: str | None, length: int, what: str) -> None:
    if value is not None and not _is_hex(value, length):
        raise ValueError(f"{what} must be {length} lower-case hex digits, got {value!r}")


@dataclass(frozen=True)
class RemoteFile:
    """A public file, where to download it, and how to recognise a good copy.

    ``sha256`` and ``md5`` are checksums of the published file; every one given must match
    (``md5`` is for files whose publisher gives only md5). ``payload_sha256`` is the sha256
    of the *decompressed* bytes of a ``.gz`` file: a copy whose gzip bytes differ (e.g.
    re-compressed by a distribution) is accepted when its payload matches. With none of
    the three, trust on first use applies. ``size`` is the published size in bytes (it
    sizes the progress bar when the server sends no length).
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    payload_sha256: str | None = None

    def __post_init__(self) -> None:
        if Path(self.filename).name != self.filename or self.filename in {"", ".", ".."}:
            raise ValueError(f"filename must be a plain file name, got {self.filename!r}")
        if isinstance(self.urls, str) or not self.urls:
            raise ValueError("urls must be a non-empty tuple of URLs")
        object.__setattr__(self, "urls", tuple(self.urls))
        _check_hex(self.sha256, 64, "sha256")
        _check_hex(self.md5, 32, "md5")
        _check_hex(self.payload_sha256, 64, "payload_sha256")

    @property
    def has_checksum(self) -> bool:
        """Whether a published checksum is known (else trust on first use applies)."""
        return bool(self.sha256 or self.md5 or self.payload_sha256)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``algorithm`` as named by :mod:`hashlib`)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    return file_digest(path, "sha256")


def gunzip_sha256(path: str | os.PathLike) -> str | None:
    """sha256 of the decompressed bytes of a gzip file, or None if it is not valid gzip."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def _sidecar(directory: Path, remote: RemoteFile) -> Path:
    return directory / f"{remote.filename}.sha256"


def _recorded_sha256(directory: Path, remote: RemoteFile) -> str | None:
    """The sha256 recorded on first use of a file without a published checksum."""
    sidecar = _sidecar(directory, remote)
    if remote.has_checksum or not sidecar.is_file():
        return None
    fields = sidecar.read_text(encoding="utf-8").split()
    if not fields or not _is_hex(fields[0], 64):
        raise ChecksumError(
            f"the trust-on-first-use record {sidecar} is unreadable; delete it (and "
            f"{remote.filename} beside it) to download and record the file again."
        )
    return fields[0]


@dataclass(frozen=True)
class _Expected:
    """The checksums a copy of ``remote`` must match, and where they come from."""

    remote: RemoteFile
    recorded: str | None  # trust-on-first-use sha256
    sidecar: Path

    @property
    def sha256(self) -> str | None:
        return self.remote.sha256 or self.recorded

    def mismatch(self, path: Path, sha256: str | None = None, md5: str | None = None) -> str | None:
        """None if ``path`` passes, else what differs (``sha256``/``md5`` if already known)."""
        remote = self.remote
        if not remote.has_checksum and self.recorded is None:
            return None
        problems = []
        if self.sha256 is not None:
            actual = sha256 or file_sha256(path)
            if actual != self.sha256:
                origin = f"recorded in {self.sidecar}" if self.recorded else "published"
                problems.append(f"sha256 {actual}, expected {self.sha256} ({origin})")
        if remote.md5 is not None:
            actual = md5 or file_digest(path, "md5")
            if actual != remote.md5:
                problems.append(f"md5 {actual}, expected {remote.md5} (published)")
        if not problems and (self.sha256 or remote.md5):
            return None
        if remote.payload_sha256 is not None:
            payload = gunzip_sha256(path)
            if payload == remote.payload_sha256:
                return None
            problems.append(
                f"decompressed sha256 {payload or '(not valid gzip)'}, "
                f"expected {remote.payload_sha256}"
            )
        return "; ".join(problems)


def _where_to_get(remote: RemoteFile, target: Path) -> str:
    return (
        f"Download {remote.urls[0]} by hand and save it as {target} (or pass the file, or "
        "the folder holding it, as the data set's `path`)."
    )


def fetch(
    remote: RemoteFile,
    *,
    directory: str | os.PathLike | None = None,
    download: bool = True,
    local_path: str | os.PathLike | None = None,
) -> Path:
    """Return the path of a verified copy of ``remote``.

    ``local_path`` (the file, or a folder holding ``remote.filename``) is used when given
    and must pass the checksum. Otherwise the copy in ``directory`` (default
    :func:`data_dir`) is used; a corrupt one is moved aside to ``<name>.corrupt`` and
    downloaded again when ``download`` is true. A missing file is downloaded when
    ``download`` is true, trying each mirror in turn.
    """
    directory = Path(directory) if directory is not None else data_dir()
    expected = _expectations(remote, directory)
    if local_path is not None:
        return _local_copy(remote, Path(local_path).expanduser(), expected)
    target = directory / remote.filename
    if target.is_file() and _kept(target, expected, download):
        return target
    if not download:
        raise DownloadError(
            f"{remote.filename} is not in the data directory {directory} and downloading is "
            f"disabled (download: false). {_where_to_get(remote, target)}"
        )
    return _download(remote, target, expected)


def _expectations(remote: RemoteFile, directory: Path) -> _Expected:
    """What a copy of ``remote`` must match, warning when nothing is known yet (trust on
    first use)."""
    expected = _Expected(remote, _recorded_sha256(directory, remote), _sidecar(directory, remote))
    if not remote.has_checksum and expected.recorded is None:
        logger.warning(
            "%s has no published checksum: its format is validated strictly and the sha256 "
            "of the first valid copy in the data directory is recorded in %s (trust on first "
            "use).",
            remote.filename,
            expected.sidecar,
        )
    return expected


def _local_copy(remote: RemoteFile, path: Path, expected: _Expected) -> Path:
    """The user's copy at ``path`` (the file or the folder holding it), which must pass."""
    if path.is_dir():
        path = path / remote.filename
    if not path.is_file():
        raise DownloadError(
            f"{remote.filename} not found at {path}: `path` must be the file or the "
            f"folder holding it. {_where_to_get(remote, path)}"
        )
    if problem := expected.mismatch(path):
        raise ChecksumError(
            f"{path} is not a valid copy of {remote.filename}: {problem}. Replace it with "
            f"a fresh download from {remote.urls[0]}."
        )
    return path


def _kept(target: Path, expected: _Expected, download: bool) -> bool:
    """Whether the data-directory copy ``target`` passes; a corrupt one is refused without
    ``download``, else moved aside to ``<name>.corrupt`` (to be downloaded again)."""
    problem = expected.mismatch(target)
    if problem is None:
        return True
    if not download:
        raise ChecksumError(
            f"{target} is corrupt ({problem}). Delete it and load again with downloads "
            f"allowed, or replace it by hand: {_where_to_get(expected.remote, target)}"
        )
    corrupt = target.with_name(f"{target.name}.corrupt")
    os.replace(target, corrupt)
    logger.warning(
        "%s is corrupt (%s); moved it to %s and downloading again.", target, problem, corrupt
    )
    return False


def _download(remote: RemoteFile, target: Path, expected: _Expected) -> Path:
    """Try each mirror; keep the first copy that passes the checksum."""
    from http.client import HTTPException  # imported by downloads only, as are urllib and rich

    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    mismatches: list[str] = []
    for url in remote.urls:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha256, md5 = _stream(url, out, remote)
                out.flush()
                os.fsync(out.fileno())
            if problem := expected.mismatch(tmp, sha256=sha256, md5=md5):
                mismatches.append(f"{url}: {problem}")
                logger.warning("%s from %s fails its checksum: %s", remote.filename, url, problem)
                continue
            os.chmod(tmp, file_mode())  # mkstemp creates 0600; data files get the usual mode
            os.replace(tmp, target)
            logger.info("downloaded %s from %s", target, url)
            return target
        except (OSError, HTTPException, ValueError) as exc:
            failures.append(f"{url}: {exc}")
            logger.warning("downloading %s from %s failed: %s", remote.filename, url, exc)
        finally:
            tmp.unlink(missing_ok=True)
    if mismatches:
        raise ChecksumError(
            f"every downloaded copy of {remote.filename} fails its checksum "
            f"({'; '.join(mismatches)}). The server may serve a changed or damaged file; "
            f"try again later, or check the file and install it by hand. "
            f"{_where_to_get(remote, target)}"
        )
    raise DownloadError(
        f"could not download {remote.filename} ({'; '.join(failures)}). "
        f"{_where_to_get(remote, target)}"
    )


def _stream(url: str, out: IO[bytes], remote: RemoteFile) -> tuple[str, str]:
    """Copy ``url`` into ``out``; return its sha256 and md5 hex digests."""
    import urllib.request

    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "mialens"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else remote.size
        received = 0
        with _progress(total) as progress:
            task = progress.add_task("download", total=total, filename=remote.filename)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                sha256.update(chunk)
                md5.update(chunk)
                received += len(chunk)
                progress.update(task, advance=len(chunk))
    if length and length.isdigit() and received != int(length):
        raise OSError(f"incomplete download: received {received} of {length} bytes")
    return sha256.hexdigest(), md5.hexdigest()


def _progress(total: int | None) -> Progress:
    """A rich download bar on stderr; silent when the size is unknown or stderr is no terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.fields[filename]}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=total is None or not console.is_terminal,
    )


def _unverified_target(remote: RemoteFile, path: Path, directory: Path) -> bool:
    """Whether ``path`` is the data-directory copy of a file with no checksum or record yet."""
    return (
        not remote.has_checksum
        and not _sidecar(directory, remote).exists()
        and path.resolve() == (directory / remote.filename).resolve()
    )


def trust_on_first_use(
    remote: RemoteFile, path: str | os.PathLike, *, directory: str | os.PathLike | None = None
) -> None:
    """Record the sha256 of ``path`` as the trusted checksum of ``remote``.

    Call it once the file passed strict format validation. Only the data-directory copy of
    a file without a published checksum is recorded, and only once.
    """
    directory = Path(directory) if directory is not None else data_dir()
    if not _unverified_target(remote, Path(path), directory):
        return
    digest = file_sha256(path)
    sidecar = _sidecar(directory, remote)
    tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp.write_text(f"{digest}  {remote.filename}\n", encoding="utf-8")
    os.replace(tmp, sidecar)
    logger.info("recorded sha256 %s of %s in %s", digest, path, sidecar)


def discard_unverified(
    remote: RemoteFile, path: str | os.PathLike, *, directory: str | os.PathLike | None = None
) -> Path | None:
    """Move an unverified copy that failed format validation aside; return where it went.

    Only the data-directory copy of a file without a checksum or record is moved (to
    ``<name>.corrupt``, so that the next load downloads a fresh one); anything else is left
    alone and None is returned.
    """
    directory = Path(directory) if directory is not None else data_dir()
    path = Path(path)
    if not _unverified_target(remote, path, directory):
        return None
    corrupt = path.with_name(f"{path.name}.corrupt")
    os.replace(path, corrupt)
    logger.warning("%s failed validation; moved it to %s.", path, corrupt)
    return corrupt
