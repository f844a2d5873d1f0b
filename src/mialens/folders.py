"""Check, before any expensive work, that a folder mialens will write into can be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mialens.errors import ConfigError


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """Create the folder ``path`` if needed and prove it writable by writing a temporary
    file in it; ``what`` names it in the error (e.g. ``--out``). Returns the path."""
    folder = Path(path).expanduser()
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker == folder:
        raise ConfigError(f"{what} {folder} is a file, not a folder; give a folder path")
    if blocker is not None:
        raise ConfigError(f"{what} {folder} cannot be created: {blocker} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{what} {folder} is not writable ({exc.strerror}); choose another folder"
        ) from None
    return folder
