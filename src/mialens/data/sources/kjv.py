"""The King James Bible (1769 text, public domain): 31,102 verses, one sample each.

Sources, first found wins: ``config.path`` (a Project Gutenberg plain-text copy, or the
folder holding ``pg10.txt``); Debian's ``bible-kjv`` program with its ``bible-kjv-text``
data (``bible -f "Genesis 1:1-Revelation 22:21"`` prints every verse as ``Ge1:1 In the
beginning ...``); else Project Gutenberg eBook #10 from the data directory or a download.
Gutenberg publishes no checksum, so the first copy that passes strict validation (the
66 books with exactly their verse counts below) is recorded and later copies must match
(trust on first use, :mod:`mialens.data.download`).

Sample ids are the Debian program's verse ids (``Ge1:1`` ... ``Rev22:21``) whatever the
source; the two editions differ in a few spellings, so their texts (and cache keys)
differ. Near-duplicate verses share a group (:mod:`mialens.data.near_duplicates`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from mialens.data.download import (
    RemoteFile,
    discard_unverified,
    fetch,
    file_sha256,
    trust_on_first_use,
)
from mialens.data.near_duplicates import DEFAULT_SHINGLE, DEFAULT_THRESHOLD, near_duplicate_groups
from mialens.data.registry import DatasetConfig, register_dataset
from mialens.data.sources.cache import cached_arrays
from mialens.data.text import TextDataset
from mialens.errors import DataError, DownloadError

DEBIAN_DATA = Path("/usr/lib/bible.data")
DEBIAN_RANGE = "Genesis 1:1-Revelation 22:21"
GUTENBERG = RemoteFile(
    "pg10.txt",
    (
        "https://www.gutenberg.org/cache/epub/10/pg10.txt",
        "https://www.gutenberg.org/ebooks/10.txt.utf-8",
    ),
)

# The books in canonical order: Debian bible-kjv's abbreviation and number of verses.
BOOKS = (
    ("Ge", 1533), ("Exo", 1213), ("Lev", 859), ("Num", 1288), ("Deu", 959), ("Josh", 658),
    ("Jdgs", 618), ("Ruth", 85), ("1Sm", 810), ("2Sm", 695), ("1Ki", 816), ("2Ki", 719),
    ("1Chr", 942), ("2Chr", 822), ("Ezra", 280), ("Neh", 406), ("Est", 167), ("Job", 1070),
    ("Psa", 2461), ("Prv", 915), ("Eccl", 222), ("SSol", 117), ("Isa", 1292), ("Jer", 1364),
    ("Lam", 154), ("Eze", 1273), ("Dan", 357), ("Hos", 197), ("Joel", 73), ("Amos", 146),
    ("Obad", 21), ("Jonah", 48), ("Mic", 105), ("Nahum", 47), ("Hab", 56), ("Zep", 53),
    ("Hag", 38), ("Zec", 211), ("Mal", 55), ("Mat", 1071), ("Mark", 678), ("Luke", 1151),
    ("John", 879), ("Acts", 1007), ("Rom", 433), ("1Cor", 437), ("2Cor", 257), ("Gal", 149),
    ("Eph", 155), ("Phi", 104), ("Col", 95), ("1Th", 89), ("2Th", 47), ("1Tim", 113),
    ("2Tim", 83), ("Titus", 46), ("Phmn", 25), ("Heb", 303), ("Jas", 108), ("1Pet", 105),
    ("2Pet", 61), ("1Jn", 105), ("2Jn", 13), ("3Jn", 14), ("Jude", 25), ("Rev", 404),
)  # fmt: skip
NUM_VERSES = sum(count for _, count in BOOKS)  # 31,102
_GROUPING = f"groups(threshold={DEFAULT_THRESHOLD}, shingle={DEFAULT_SHINGLE})"  # in cache keys

_DEBIAN_LINE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.+)$")
_GUTENBERG_VERSE = re.compile(r"(?:^|(?<=\s))(\d+):(\d+)\s+")


def check_verses(verses: list[tuple[str, str]], source: str) -> None:
    """Refuse anything but the 66 books in order, each with its number of verses."""
    books = [re.sub(r"\d+:\d+$", "", verse_id) for verse_id, _ in verses]
    counts = [(b, books.count(b)) for b in dict.fromkeys(books)]
    if counts != list(BOOKS):
        wrong = next(
            (
                f"{got} where {want} was expected"
                for got, want in zip(counts, BOOKS, strict=False)
                if got != want
            ),
            f"{len(counts)} books instead of {len(BOOKS)}",
        )
        raise DataError(
            f"{source} is not the complete King James Bible: {len(verses)} verses (expected "
            f"{NUM_VERSES}); books and verse counts: {wrong}."
        )
    if any(not text.strip() for _, text in verses):
        raise DataError(f"{source} holds an empty verse.")


def parse_debian_listing(listing: str) -> list[tuple[str, str]]:
    """``(id, text)`` of each ``Ge1:1 In the beginning ...`` line of ``bible -f``'s output."""
    verses = []
    for number, line in enumerate(listing.splitlines(), 1):
        match = _DEBIAN_LINE.match(line.strip())
        if match is None:
            raise DataError(f"line {number} of the bible-kjv listing is not a verse: {line!r}")
        book, chapter, verse, text = match.groups()
        verses.append((f"{book}{chapter}:{verse}", text.strip()))
    return verses


def parse_gutenberg(text: str) -> list[tuple[str, str]]:
    """``(id, text)`` of each verse of Project Gutenberg's eBook #10: paragraphs starting
    with ``chapter:verse`` are verses (titles are not); each ``1:1`` starts the next book."""
    start, end = text.find("*** START OF"), text.find("*** END OF")
    body = text[text.find("\n", start) + 1 : end if end >= 0 else None] if start >= 0 else text
    verses: list[tuple[str, str]] = []
    book = -1
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = " ".join(paragraph.split())
        if not _GUTENBERG_VERSE.match(paragraph):
            continue
        pieces = _GUTENBERG_VERSE.split(paragraph)[1:]
        for chapter, verse, verse_text in zip(pieces[::3], pieces[1::3], pieces[2::3], strict=True):
            book += (chapter, verse) == ("1", "1")
            name = BOOKS[book][0] if 0 <= book < len(BOOKS) else f"Book{book + 1}"
            verses.append((f"{name}{chapter}:{verse}", verse_text.strip()))
    return verses


def _debian_verses() -> list[tuple[str, str]]:
    program = shutil.which("bible")
    if program is None:
        raise DataError("the bible-kjv program is not installed")
    result = subprocess.run(
        [program, "-f", DEBIAN_RANGE], capture_output=True, check=False, timeout=120
    )
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise DataError(f"`bible -f {DEBIAN_RANGE!r}` failed ({result.returncode}): {stderr}")
    verses = parse_debian_listing(result.stdout.decode("utf-8", errors="replace"))
    check_verses(verses, "the bible-kjv listing")
    return verses


def _gutenberg_verses(path: Path) -> list[tuple[str, str]]:
    try:
        verses = parse_gutenberg(path.read_text(encoding="utf-8-sig"))
        check_verses(verses, str(path))
    except (DataError, UnicodeDecodeError) as exc:
        aside = discard_unverified(GUTENBERG, path)
        note = f" It was moved aside to {aside}; load again to download it afresh." if aside else ""
        raise DataError(f"{path} is not Project Gutenberg's King James Bible: {exc}{note}") from exc
    return verses


def _to_arrays(verses: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    texts = [text for _, text in verses]
    encoded = [text.encode("utf-8") for text in texts]
    return {
        "ids": np.array([verse_id for verse_id, _ in verses]),
        "text_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "text_ends": np.cumsum([len(e) for e in encoded]).astype(np.int64),
        "groups": near_duplicate_groups(texts),
    }


def _from_arrays(arrays: dict[str, np.ndarray]) -> TextDataset:
    data, ends = arrays["text_bytes"].tobytes(), arrays["text_ends"].tolist()
    texts = tuple(data[a:b].decode("utf-8") for a, b in zip([0, *ends[:-1]], ends, strict=True))
    return TextDataset("kjv", texts, arrays["ids"], arrays["groups"])


@register_dataset("kjv", "King James Bible: 31,102 verses, near duplicates grouped", "text")
def load_kjv(config: DatasetConfig) -> TextDataset:
    """Every verse in canonical order, ids ``Ge1:1`` ... ``Rev22:21``, grouped by near
    duplicates (parsed once, then cached in the data directory)."""
    if config.path is None and shutil.which("bible") and DEBIAN_DATA.is_file():
        key = f"debian:{file_sha256(DEBIAN_DATA)}:{_GROUPING}"
        return _from_arrays(cached_arrays("kjv", key, lambda: _to_arrays(_debian_verses())))
    try:
        path = fetch(GUTENBERG, download=config.download, local_path=config.path)
    except DownloadError as exc:
        raise DownloadError(
            f"{exc} On Debian or Ubuntu, `apt-get install bible-kjv` gives the text offline."
        ) from exc
    key = f"gutenberg:{file_sha256(path)}:{_GROUPING}"
    arrays = cached_arrays("kjv", key, lambda: _to_arrays(_gutenberg_verses(path)))
    trust_on_first_use(GUTENBERG, path)
    return _from_arrays(arrays)
