"""Exceptions raised by mialens.

Every error a user can cause derives from :class:`MialensError`, so the CLI can show
the message (which says what to fix) without a traceback.
"""

from __future__ import annotations


class MialensError(Exception):
    """Base class of every error caused by input, configuration or files."""


class ConfigError(MialensError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class DataError(MialensError, ValueError):
    """An array or data set is malformed (shape, NaN/inf, labels, classes, ids)."""


class UnknownNameError(ConfigError, KeyError):
    """A dataset, attack, architecture or other registered name does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ChecksumError(MialensError):
    """A downloaded or cached file does not match its expected checksum."""


class CacheError(MialensError):
    """A cache entry (model or signals) is unreadable or inconsistent with its manifest."""


class DownloadError(MialensError):
    """A file could not be downloaded and is not available locally."""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists the valid names and the closest match."""
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}.")
