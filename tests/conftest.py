"""Shared fixtures: every test gets its own cache and data directories."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_LOCATION = REPO.parent / "shared" / "data" / "dataset_location.tgz"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Point the model cache and the data directory at fresh temporary folders."""
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    data = tmp_path_factory.mktemp("data")
    if SHARED_LOCATION.is_file():
        (data / SHARED_LOCATION.name).symlink_to(SHARED_LOCATION)
    monkeypatch.setenv("MIALENS_DATA_DIR", str(data))
    return data


@pytest.fixture
def location30_archive() -> Path:
    """The real Location30 archive beside the repository (``../shared/data``), else skip."""
    if not SHARED_LOCATION.is_file():
        pytest.skip("Location30 archive not available in ../shared/data")
    return SHARED_LOCATION
