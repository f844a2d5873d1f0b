"""The King James Bible loader: the Gutenberg parser, strict validation, and the real
Debian corpus (skipped when bible-kjv is not installed)."""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mialens.data import DatasetConfig, load_dataset
from mialens.data.sources import kjv
from mialens.errors import DataError, DownloadError

GUTENBERG_HEAD = (
    "The Project Gutenberg eBook of The King James Bible\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK 10 ***\n\n"
)


def _gutenberg_text(books: tuple[tuple[str, int], ...]) -> str:
    """A file in eBook #10's layout: book titles, then wrapped ``chapter:verse`` paragraphs."""
    parts = [GUTENBERG_HEAD]
    for name, count in books:
        parts.append(f"The Book of {name}\n\n\n")
        for v in range(1, count + 1):
            chapter, verse = divmod(v - 1, 30)
            parts.append(f"{chapter + 1}:{verse + 1} Verse {v} of {name},\nwrapped here.\n\n")
    parts.append("*** END OF THE PROJECT GUTENBERG EBOOK 10 ***\n")
    return "".join(parts)


def test_gutenberg_parser_numbers_books_by_their_first_verse() -> None:
    text = _gutenberg_text((("Ge", 31), ("Exo", 2)))
    text = text.replace("\n\n2:1 Verse 31", " 2:1 Verse 31")  # two verses in one paragraph
    verses = kjv.parse_gutenberg(text)
    assert verses[0] == ("Ge1:1", "Verse 1 of Ge, wrapped here.")
    assert verses[29:31] == [
        ("Ge1:30", "Verse 30 of Ge, wrapped here."),
        ("Ge2:1", "Verse 31 of Ge, wrapped here."),
    ]
    assert [v for v, _ in verses[31:]] == ["Exo1:1", "Exo1:2"]


def test_validation_refuses_an_incomplete_bible() -> None:
    with pytest.raises(DataError, match=r"Exo.*where \('Exo', 1213\) was expected"):
        kjv.check_verses(kjv.parse_gutenberg(_gutenberg_text((("Ge", 1533), ("Exo", 5)))), "f")


def test_a_complete_gutenberg_copy_loads_from_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(kjv, "near_duplicate_groups", lambda texts: np.arange(len(texts)))
    path = tmp_path / "pg10.txt"
    path.write_text(_gutenberg_text(kjv.BOOKS), encoding="utf-8")
    data = load_dataset(DatasetConfig(name="kjv", path=tmp_path))
    assert len(data) == kjv.NUM_VERSES == 31_102
    assert data.ids[0] == "Ge1:1" and data.ids[-1] == "Rev14:14"  # 404 verses of 30 a chapter
    assert data.texts[-1] == "Verse 404 of Rev, wrapped here."


def test_debian_listing_lines_are_parsed_and_checked() -> None:
    assert kjv.parse_debian_listing("Ge1:1 In the beginning.\n1Sm2:3 Talk no more.") == [
        ("Ge1:1", "In the beginning."),
        ("1Sm2:3", "Talk no more."),
    ]
    with pytest.raises(DataError, match=r"line 2 .* is not a verse"):
        kjv.parse_debian_listing("Ge1:1 In the beginning.\nnot a verse")


needs_corpus = pytest.mark.skipif(
    shutil.which("bible") is None or not kjv.DEBIAN_DATA.is_file(),
    reason="the King James Bible is not installed: apt-get install bible-kjv bible-kjv-text",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The real corpus, loaded (and grouped) once for this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIALENS_DATA_DIR", str(tmp_path_factory.mktemp("kjv-data")))
        yield load_dataset("kjv"), load_dataset("kjv")  # the second load reads the cache


@needs_corpus
def test_the_debian_corpus_has_every_verse(corpus) -> None:
    data, again = corpus
    assert len(data) == 31_102
    assert data.ids[:2].tolist() == ["Ge1:1", "Ge1:2"] and data.ids[-1] == "Rev22:21"
    assert data.texts[0] == "In the beginning God created the heaven and the earth."
    assert again.fingerprint == data.fingerprint


@needs_corpus
def test_numbers_7_offerings_share_groups(corpus) -> None:
    data, _ = corpus
    group = dict(zip(data.ids.tolist(), data.groups.tolist(), strict=True))
    day_starts = range(13, 84, 6)  # the twelve princes' offerings: verses 13-17, 19-23, ...
    for line in range(5):  # charger, spoon, burnt offering, sin offering, peace offerings
        assert len({group[f"Num7:{start + line}"] for start in day_starts}) == 1
    assert len({group[f"Num7:{start}"] for start in day_starts} | {group["Num7:14"]}) == 2


@needs_corpus
def test_psalm_136_refrain_groups(corpus) -> None:
    data, _ = corpus
    group = dict(zip(data.ids.tolist(), data.groups.tolist(), strict=True))
    psalm = collections.Counter(group[f"Psa136:{v}"] for v in range(1, 27))
    assert psalm.most_common(1)[0][1] >= 20  # "...: for his mercy endureth for ever"
    assert len(psalm) <= 4
    assert group["Psa136:1"] == group["Psa136:2"] == group["Psa136:26"]  # "O give thanks"
    sizes = np.bincount(data.groups)
    assert sizes.max() < 200  # no chain across unrelated verses


def test_the_classifier_audit_refuses_text_data_before_loading_it(monkeypatch) -> None:
    from mialens.audit import design
    from mialens.cli import demo_config
    from mialens.errors import ConfigError
    from mialens.workflows.config import AuditConfig, apply_overrides, validate_config

    monkeypatch.setattr(design, "load_dataset", lambda *a: pytest.fail("the corpus was loaded"))
    raw = apply_overrides(demo_config(), ["dataset.name=kjv"])
    with pytest.raises(ConfigError, match="'kjv' holds text, not features and class labels"):
        design.prepare_audit(AuditConfig.model_validate(raw))  # a classifier spec built by hand
    # a configuration file with text data is a language-model audit: classifier keys refused
    with pytest.raises(ConfigError, match=r"holds text: an LM audit\):\n  model.arch: unknown"):
        validate_config(raw)


def test_without_corpus_or_network_the_error_says_how_to_get_it(monkeypatch) -> None:
    monkeypatch.setattr(kjv.shutil, "which", lambda name: None)  # as if bible-kjv were absent
    with pytest.raises(DownloadError, match=r"downloading is disabled.*apt-get install bible-kjv"):
        load_dataset(DatasetConfig(name="kjv", download=False))


def test_a_downloaded_copy_is_validated_then_trusted(tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    monkeypatch.setattr(kjv.shutil, "which", lambda name: None)  # as if bible-kjv were absent
    monkeypatch.setattr(kjv, "near_duplicate_groups", lambda texts: np.arange(len(texts)))
    served = tmp_path / "served.txt"
    served.write_text(_gutenberg_text(kjv.BOOKS[:-1]), encoding="utf-8")  # Revelation missing
    remote = dataclasses.replace(kjv.GUTENBERG, urls=(served.as_uri(),))
    monkeypatch.setattr(kjv, "GUTENBERG", remote)
    with pytest.raises(DataError, match=r"65 books instead of 66.*moved aside"):
        load_dataset("kjv")
    served.write_text(_gutenberg_text(kjv.BOOKS), encoding="utf-8")
    assert len(load_dataset("kjv")) == 31_102
    sidecar = Path(os.environ["MIALENS_DATA_DIR"]) / "pg10.txt.sha256"
    assert sidecar.read_text().split()[0] == hashlib.sha256(served.read_bytes()).hexdigest()
