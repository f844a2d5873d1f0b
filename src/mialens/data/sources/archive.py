"""Reading members of a tar archive in one pass, without extracting it to disk."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import IO, TypeVar

from mialens.errors import DataError

T = TypeVar("T")


def safe_member_name(name: str, archive: Path) -> str:
    """The normalised name of a member; raise for absolute paths and ``..`` components."""
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts:
        raise DataError(
            f"{archive} holds a member with an unsafe path {name!r} (absolute or with '..'); "
            "it is not a genuine copy of the data set, refusing to read it. Delete it and "
            "download the archive again."
        )
    return "/".join(p for p in parts if p != ".")


def read_members(archive: Path, readers: Mapping[str, Callable[[IO[bytes]], T]]) -> dict[str, T]:
    """Call ``readers[name](stream)`` on each named regular file of ``archive``.

    Every member name is checked with :func:`safe_member_name`. Raises :class:`DataError`
    for unreadable archives and for members that are missing or appear twice.
    """
    results: dict[str, T] = {}
    seen: list[str] = []
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = safe_member_name(member.name, archive)
                seen.append(name)
                if name not in readers or not member.isfile():
                    continue
                if name in results:
                    raise DataError(f"{archive} holds the member {name!r} twice.")
                stream = tar.extractfile(member)
                assert stream is not None  # regular files always have a stream
                results[name] = readers[name](stream)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{archive} is not a readable tar archive ({exc}).") from exc
    if missing := sorted(set(readers) - set(results)):
        shown = ", ".join(seen[:10]) + (", ..." if len(seen) > 10 else "")
        raise DataError(
            f"{archive} lacks the file(s) {', '.join(missing)} (it holds: {shown or 'nothing'}); "
            "it is not the expected archive."
        )
    return results
