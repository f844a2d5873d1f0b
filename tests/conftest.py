"""Shared fixtures: every test gets its own cache and data directories."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCATION_FILE = "dataset_location.tgz"


def _find_location30() -> Path | None:
    """The real Location30 archive: in ``$MIALENS_DATA_DIR`` as the tests were started
    with (read before any fixture replaces it), else in ``../shared/data``."""
    folders = [os.environ.get("MIALENS_DATA_DIR"), REPO.parent / "shared" / "data"]
    for folder in folders:
        if folder and (Path(folder).expanduser() / LOCATION_FILE).is_file():
            return (Path(folder).expanduser() / LOCATION_FILE).resolve()
    return None


SHARED_LOCATION = _find_location30()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Point the model cache and the data directory at fresh temporary folders."""
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    data = tmp_path_factory.mktemp("data")
    if SHARED_LOCATION is not None:
        (data / LOCATION_FILE).symlink_to(SHARED_LOCATION)
    monkeypatch.setenv("MIALENS_DATA_DIR", str(data))
    return data


@pytest.fixture
def location30_archive() -> Path:
    """The real Location30 archive ($MIALENS_DATA_DIR or ../shared/data), else skip."""
    if SHARED_LOCATION is None:
        pytest.skip(f"{LOCATION_FILE} is in neither $MIALENS_DATA_DIR nor ../shared/data")
    return SHARED_LOCATION
