"""Check, before any expensive work, that a folder mialens will write into can be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mialens.errors import ConfigError


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """Check that the folder ``path`` exists or can be created, and is writable, by writing
    a temporary file into it (or into its nearest existing parent); ``what`` names it in
    the error (e.g. ``--out``). Creates nothing. Returns the path."""
    folder = Path(path).expanduser()
    existing = next(p for p in (folder, *folder.parents, Path.cwd()) if p.exists())
    if existing == folder and not folder.is_dir():
        raise ConfigError(f"{what} {folder} is a file, not a folder; give a folder path")
    if not existing.is_dir():
        raise ConfigError(f"{what} {folder} cannot be created: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{what} {folder} is not writable ({exc.strerror}); choose another folder"
        ) from None
    return folder
