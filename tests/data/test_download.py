"""fetch(): resolution order, checksums, mirrors, corrupt copies and trust on first use."""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import stat
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mialens.data.download import (
    RemoteFile,
    data_dir,
    discard_unverified,
    fetch,
    trust_on_first_use,
)
from mialens.errors import ChecksumError, DownloadError

PAYLOAD = b"mialens test payload\n" * 100


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A file to 'download' through a file:// URL."""
    path = tmp_path / "server" / "payload.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def _remote(source: Path, **checks: str | None) -> RemoteFile:
    return RemoteFile("payload.bin", (source.as_uri(),), **checks)


# --- data directory -------------------------------------------------------------------------


def test_data_dir_prefers_env_then_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MIALENS_DATA_DIR", str(tmp_path / "explicit"))
    assert data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("MIALENS_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "mialens" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "mialens" / "data"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filename": "../escape.tgz"},
        {"filename": "a/b.tgz"},
        {"urls": ()},
        {"sha256": "abc"},
        {"md5": "Z" * 32},
    ],
)
def test_remote_file_rejects_bad_fields(kwargs: dict) -> None:
    fields = {"filename": "f.tgz", "urls": ("file:///f.tgz",), **kwargs}
    with pytest.raises(ValueError):
        RemoteFile(**fields)


# --- download ------------------------------------------------------------------------------


def test_download_verifies_and_is_reused(source: Path, data_home: Path) -> None:
    remote = _remote(source, sha256=_sha(PAYLOAD))
    path = fetch(remote)
    assert path == data_home / "payload.bin"
    assert path.read_bytes() == PAYLOAD
    source.unlink()  # the second call must not need the server
    assert fetch(remote, download=False) == path
    assert sorted(p.name for p in data_home.iterdir()) == ["payload.bin"]  # no temp files left


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_downloaded_file_gets_the_umask_mode(source: Path, data_home: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        path = fetch(_remote(source, sha256=_sha(PAYLOAD)))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_download_tries_the_next_mirror(source: Path, tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere.bin").as_uri()
    remote = RemoteFile(
        "payload.bin", (missing, source.as_uri()), md5=hashlib.md5(PAYLOAD).hexdigest()
    )
    assert fetch(remote).read_bytes() == PAYLOAD


def test_all_mirrors_failing_says_where_to_put_the_file(tmp_path: Path, data_home: Path) -> None:
    url = (tmp_path / "nowhere.bin").as_uri()
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile("payload.bin", (url,), sha256=_sha(PAYLOAD)))
    message = str(info.value)
    assert url in message
    assert str(data_home / "payload.bin") in message


def test_offline_error_names_url_and_target(source: Path, data_home: Path) -> None:
    with pytest.raises(DownloadError) as info:
        fetch(_remote(source, sha256=_sha(PAYLOAD)), download=False)
    message = str(info.value)
    assert source.as_uri() in message
    assert str(data_home / "payload.bin") in message
    assert "download" in message


def test_fresh_download_with_wrong_checksum_is_rejected(source: Path, data_home: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        fetch(_remote(source, sha256=wrong))
    message = str(info.value)
    assert wrong in message and _sha(PAYLOAD) in message and source.as_uri() in message
    assert not (data_home / "payload.bin").exists()
    assert list(data_home.iterdir()) == []


def test_corrupt_copy_is_moved_aside_and_downloaded_again(
    source: Path, data_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_home.mkdir()
    (data_home / "payload.bin").write_bytes(b"damaged")
    with caplog.at_level(logging.WARNING):
        path = fetch(_remote(source, sha256=_sha(PAYLOAD)))
    assert path.read_bytes() == PAYLOAD
    assert (data_home / "payload.bin.corrupt").read_bytes() == b"damaged"
    assert "corrupt" in caplog.text


def test_corrupt_copy_offline_says_to_delete_it(source: Path, data_home: Path) -> None:
    data_home.mkdir()
    (data_home / "payload.bin").write_bytes(b"damaged")
    with pytest.raises(ChecksumError) as info:
        fetch(_remote(source, sha256=_sha(PAYLOAD)), download=False)
    assert str(data_home / "payload.bin") in str(info.value)
    assert "Delete it" in str(info.value)
    assert (data_home / "payload.bin").read_bytes() == b"damaged"  # left for the user


# --- local copies ------------------------------------------------------------------------


def test_local_file_or_folder_is_used_without_download(tmp_path: Path, data_home: Path) -> None:
    local = tmp_path / "mine" / "payload.bin"
    local.parent.mkdir()
    local.write_bytes(PAYLOAD)
    remote = RemoteFile("payload.bin", ("file:///unused",), sha256=_sha(PAYLOAD))
    assert fetch(remote, local_path=local, download=False) == local
    assert fetch(remote, local_path=local.parent, download=False) == local
    assert not data_home.exists()


def test_local_copy_with_wrong_checksum_is_never_accepted(tmp_path: Path) -> None:
    local = tmp_path / "payload.bin"
    local.write_bytes(b"something else")
    remote = RemoteFile("payload.bin", ("file:///unused",), sha256=_sha(PAYLOAD))
    with pytest.raises(ChecksumError, match="not a valid copy"):
        fetch(remote, local_path=local)


def test_missing_local_copy_is_an_error(tmp_path: Path) -> None:
    remote = RemoteFile("payload.bin", ("file:///unused",), sha256=_sha(PAYLOAD))
    with pytest.raises(DownloadError, match="not found"):
        fetch(remote, local_path=tmp_path)


def test_recompressed_gzip_passes_by_its_payload(tmp_path: Path) -> None:
    published = gzip.compress(PAYLOAD, compresslevel=9, mtime=1)
    repacked = gzip.compress(PAYLOAD, compresslevel=1, mtime=2)  # e.g. a distribution's copy
    assert published != repacked
    local = tmp_path / "payload.bin"
    local.write_bytes(repacked)
    remote = RemoteFile(
        "payload.bin",
        ("file:///unused",),
        sha256=_sha(published),
        md5=hashlib.md5(published).hexdigest(),
        payload_sha256=_sha(PAYLOAD),
    )
    assert fetch(remote, local_path=local) == local
    local.write_bytes(gzip.compress(PAYLOAD + b"x"))
    with pytest.raises(ChecksumError, match="decompressed sha256"):
        fetch(remote, local_path=local)


# --- trust on first use --------------------------------------------------------------------


def test_trust_on_first_use_records_and_then_enforces(
    source: Path, data_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remote = _remote(source)  # no published checksum
    with caplog.at_level(logging.WARNING):
        path = fetch(remote)
    assert "no published checksum" in caplog.text
    sidecar = data_home / "payload.bin.sha256"
    assert not sidecar.exists()  # recorded only after format validation
    trust_on_first_use(remote, path)
    assert sidecar.read_text().split()[0] == _sha(PAYLOAD)

    path.write_bytes(b"damaged")  # a corrupt copy is replaced by a fresh download
    assert fetch(remote).read_bytes() == PAYLOAD

    path.write_bytes(b"damaged")
    source.write_bytes(b"the server now serves other bytes")
    with pytest.raises(ChecksumError, match="recorded in"):
        fetch(remote)


def test_local_copy_must_match_the_recorded_checksum(source: Path, tmp_path: Path) -> None:
    remote = _remote(source)
    trust_on_first_use(remote, fetch(remote))
    other = tmp_path / "payload.bin"
    other.write_bytes(b"not the recorded file")
    with pytest.raises(ChecksumError):
        fetch(remote, local_path=other)


def test_trust_records_only_data_directory_copies(source: Path, data_home: Path) -> None:
    trust_on_first_use(_remote(source), source)
    assert not (data_home / "payload.bin.sha256").exists()
    trust_on_first_use(_remote(source, sha256=_sha(PAYLOAD)), fetch(_remote(source)))
    assert not (data_home / "payload.bin.sha256").exists()


def test_discard_unverified_moves_only_unrecorded_data_directory_copies(
    source: Path, data_home: Path
) -> None:
    remote = _remote(source)
    assert discard_unverified(remote, source) is None  # a user's file is left alone
    path = fetch(remote)
    moved = discard_unverified(remote, path)
    assert moved == data_home / "payload.bin.corrupt"
    assert not path.exists()
    path = fetch(remote)
    trust_on_first_use(remote, path)
    assert discard_unverified(remote, path) is None  # recorded copies are not guessed at


def test_http_download_falls_back_after_a_404(source: Path) -> None:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(source.parent))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            remote = RemoteFile(
                "payload.bin", (base + "missing.bin", base + "payload.bin"), sha256=_sha(PAYLOAD)
            )
            assert fetch(remote).read_bytes() == PAYLOAD
        finally:
            server.shutdown()
