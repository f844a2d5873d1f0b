"""The registered loaders, on small files of each real format (and the real files if present)."""

from __future__ import annotations

import dataclasses
import gzip
import io
import logging
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mialens.data import DatasetConfig, list_datasets, load_dataset
from mialens.data.sources import cifar, fashion_mnist, privacytrustlab
from mialens.data.sources.binary_table import read_binary_rows
from mialens.data.sources.idx import parse_idx
from mialens.errors import ChecksumError, ConfigError, DataError, UnknownNameError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _binary_table(
    n_rows: int,
    n_features: int,
    n_classes: int,
    *,
    labelled: bool,
    quoted: bool = False,
    seed: int = 0,
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Text rows ``[label,]f1,...`` as in the privacytrustlab files, and the arrays they hold."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n_rows, n_features))
    labels = rng.integers(1, n_classes + 1, size=n_rows)
    lines = []
    for label, row in zip(labels, x, strict=True):
        features = ",".join(map(str, row))
        tag = f'"{label}"' if quoted else str(label)
        lines.append(f"{tag},{features}" if labelled else features)
    return ("\n".join(lines) + "\n").encode(), x, labels


def _use_table_spec(
    monkeypatch: pytest.MonkeyPatch, attr: str, archive: Path, sha256: str | None, **changes: int
) -> None:
    spec = getattr(privacytrustlab, attr)
    remote = dataclasses.replace(spec.remote, urls=(archive.as_uri(),), sha256=sha256)
    monkeypatch.setattr(privacytrustlab, attr, dataclasses.replace(spec, remote=remote, **changes))


# --- registry and digits ------------------------------------------------------------------


def test_every_builtin_is_registered_with_a_description() -> None:
    names = {info.name for info in list_datasets()}
    expected = {"digits", "location30", "fashion-mnist", "purchase100", "texas100"}
    assert expected | {"cifar10", "cifar100", "npz", "csv"} <= names
    assert all(info.description for info in list_datasets())


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="location30"):
        load_dataset("location3")


def test_digits() -> None:
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == np.float32
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.num_classes == 10 and ds.modality == "image"
    np.testing.assert_array_equal(ds.ids, np.arange(1797))


# --- Location30 / Purchase100 / Texas100 ----------------------------------------------------


@pytest.fixture
def location_archive(tmp_path: Path, write_tgz: Callable) -> tuple[Path, np.ndarray, np.ndarray]:
    text, x, labels = _binary_table(12, 7, 30, labelled=True, quoted=True)
    folder = tmp_path / "server"
    folder.mkdir()
    return write_tgz(folder / "dataset_location.tgz", {"bangkok": text}), x, labels


def test_location30_from_local_file_and_folder(
    monkeypatch: pytest.MonkeyPatch, location_archive: tuple, sha256: Callable, data_home: Path
) -> None:
    archive, x, labels = location_archive
    _use_table_spec(monkeypatch, "LOCATION30", archive, sha256(archive), n_rows=12, n_features=7)
    for path in (archive, archive.parent):
        ds = load_dataset(DatasetConfig(name="location30", path=path, download=False))
        assert ds.x.shape == (12, 7) and ds.x.dtype == np.float32
        np.testing.assert_array_equal(ds.x, x)
        np.testing.assert_array_equal(ds.y, labels - 1)
        np.testing.assert_array_equal(ds.ids, np.arange(12))
        assert ds.num_classes == 30
    assert not (data_home / "dataset_location.tgz").exists()


def test_location30_local_copy_with_wrong_checksum(location_archive: tuple) -> None:
    archive, _, _ = location_archive  # checked against the real published sha256
    with pytest.raises(ChecksumError):
        load_dataset(DatasetConfig(name="location30", path=archive))


def test_location30_download_then_cache(
    monkeypatch: pytest.MonkeyPatch,
    location_archive: tuple,
    sha256: Callable,
    data_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    archive, x, _ = location_archive
    _use_table_spec(monkeypatch, "LOCATION30", archive, sha256(archive), n_rows=12, n_features=7)
    first = load_dataset("location30")
    assert (data_home / "dataset_location.tgz").is_file()
    (cache,) = (data_home / "parsed").iterdir()

    with monkeypatch.context() as patch:  # a second load reads the cache, not the archive
        patch.setattr(privacytrustlab, "_parse", lambda *a: pytest.fail("cache not used"))
        assert load_dataset("location30").fingerprint == first.fingerprint

    cached_x = np.load(cache / "x.npy")
    cached_x[0, 0] ^= 1
    np.save(cache / "x.npy", cached_x)  # silent damage: same shape, other values
    with caplog.at_level(logging.WARNING):
        again = load_dataset("location30")
    assert "corrupt" in caplog.text
    np.testing.assert_array_equal(again.x, x)
    (cache / "x.npy").write_bytes(b"\x93NUMPY truncated")
    assert load_dataset("location30").fingerprint == first.fingerprint


def test_purchase100_trusts_a_valid_first_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_tgz: Callable, data_home: Path
) -> None:
    text, x, labels = _binary_table(9, 5, 100, labelled=True)
    archive = write_tgz(tmp_path / "dataset_purchase.tgz", {"dataset_purchase": text})
    _use_table_spec(monkeypatch, "PURCHASE100", archive, None, n_rows=9, n_features=5)
    ds = load_dataset("purchase100")
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, labels - 1)
    assert ds.num_classes == 100
    assert (data_home / "dataset_purchase.tgz.sha256").is_file()

    (data_home / "dataset_purchase.tgz").write_bytes(b"damaged")
    with pytest.raises(ChecksumError, match=r"dataset_purchase\.tgz"):
        load_dataset(DatasetConfig(name="purchase100", download=False))


def test_purchase100_invalid_first_download_is_discarded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_tgz: Callable, data_home: Path
) -> None:
    text, _, _ = _binary_table(9, 5, 100, labelled=True)
    text = text.replace(b"\n", b"\n101,0,0,0,0,0\n", 1)  # label out of range, 10 rows
    archive = write_tgz(tmp_path / "dataset_purchase.tgz", {"dataset_purchase": text})
    _use_table_spec(monkeypatch, "PURCHASE100", archive, None, n_rows=10, n_features=5)
    with pytest.raises(DataError, match=r"line 2 holds the label 101.*moved to"):
        load_dataset("purchase100")
    assert (data_home / "dataset_purchase.tgz.corrupt").is_file()
    assert not (data_home / "dataset_purchase.tgz").exists()
    assert not (data_home / "dataset_purchase.tgz.sha256").exists()


def test_texas100_reads_features_and_labels_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_tgz: Callable
) -> None:
    feats, x, labels = _binary_table(6, 11, 100, labelled=False, seed=3)
    label_text = "".join(f"{label}\n" for label in labels).encode()
    archive = write_tgz(
        tmp_path / "dataset_texas.tgz",
        {"texas/100/feats": feats, "texas/100/labels": label_text},
    )
    _use_table_spec(monkeypatch, "TEXAS100", archive, None, n_rows=6, n_features=11)
    ds = load_dataset(DatasetConfig(name="texas100", path=archive))
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, labels - 1)

    (tmp_path / "short").mkdir()
    short = write_tgz(
        tmp_path / "short" / "dataset_texas.tgz",
        {"texas/100/feats": feats, "texas/100/labels": label_text.rsplit(b"\n", 2)[0]},
    )
    with pytest.raises(DataError, match="5 labels, expected 6"):
        load_dataset(DatasetConfig(name="texas100", path=short))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"1,0,1\n2,1,1,0\n", "line 2 has 3 feature values; expected 2"),
        (b"1,0,1\n2,1,2\n", "line 2 holds a value other than 0 or 1"),
        (b"1,0,1\n2,1;1\n", "line 2 holds a value other than 0 or 1"),
        (b"1,0,1\nx,1,1\n", "line 2: the label b'x' is not an integer"),
        (b"1,0,1\n", "1 rows, expected 2"),
        (b"1,0,1\n1,0,1\n1,0,1\n", "more than the expected 2 rows"),
    ],
)
def test_binary_rows_are_parsed_strictly(text: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_binary_rows(io.BytesIO(text), n_rows=2, n_features=2, labelled=True, where="t")


def test_binary_rows_accept_quoted_labels_and_crlf() -> None:
    labels, x = read_binary_rows(
        io.BytesIO(b'"3",0,1\r\n"12",1,1\r\n'), n_rows=2, n_features=2, labelled=True, where="t"
    )
    np.testing.assert_array_equal(labels, [3, 12])
    np.testing.assert_array_equal(x, [[0, 1], [1, 1]])


@pytest.mark.parametrize("bad_name", ["../evil", "/etc/evil", "ok/../../evil"])
def test_tar_members_with_unsafe_paths_are_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_tgz: Callable, bad_name: str
) -> None:
    text, _, _ = _binary_table(3, 4, 30, labelled=True)
    archive = write_tgz(tmp_path / "dataset_location.tgz", {bad_name: b"payload", "bangkok": text})
    _use_table_spec(monkeypatch, "LOCATION30", archive, None, n_rows=3, n_features=4)
    with pytest.raises(DataError, match="unsafe path"):
        load_dataset(DatasetConfig(name="location30", path=archive))
    assert not (tmp_path.parent / "evil").exists()


def test_archive_lacking_the_member_names_what_it_holds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_tgz: Callable
) -> None:
    archive = write_tgz(tmp_path / "dataset_location.tgz", {"paris": b"1,0\n"})
    _use_table_spec(monkeypatch, "LOCATION30", archive, None, n_rows=1, n_features=1)
    with pytest.raises(DataError, match=r"lacks the file\(s\) bangkok.*paris"):
        load_dataset(DatasetConfig(name="location30", path=archive))


def test_not_an_archive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    archive = tmp_path / "dataset_location.tgz"
    archive.write_bytes(b"<html>rate limited</html>")
    _use_table_spec(monkeypatch, "LOCATION30", archive, None, n_rows=1, n_features=1)
    with pytest.raises(DataError, match="not a readable tar archive"):
        load_dataset(DatasetConfig(name="location30", path=archive))


# --- CIFAR ------------------------------------------------------------------------------


def _cifar_records(labels: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Binary records (label bytes, then 1024 R, 1024 G, 1024 B pixels) and their images."""
    images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([labels.astype(np.uint8), images.reshape(len(labels), -1)], axis=1)
    return records.tobytes(), images


def test_cifar10_binary_batches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_tgz: Callable, sha256: Callable
) -> None:
    rng = np.random.default_rng(0)
    members, images, labels = {}, [], []
    for name in [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]:
        batch_labels = rng.integers(0, 10, size=(2, 1))
        data, batch_images = _cifar_records(batch_labels, rng)
        members[f"cifar-10-batches-bin/{name}"] = data
        images.append(batch_images)
        labels.append(batch_labels[:, 0])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    members["cifar-10-batches-bin/batches.meta.txt"] = "\n".join([*names, "truck", "", ""]).encode()
    archive = write_tgz(tmp_path / "cifar-10-binary.tar.gz", members)
    remote = dataclasses.replace(cifar.CIFAR10.remote, sha256=sha256(archive), md5=None)
    spec = dataclasses.replace(cifar.CIFAR10, remote=remote, n_train=10, n_test=2)
    monkeypatch.setattr(cifar, "CIFAR10", spec)

    ds = load_dataset(DatasetConfig(name="cifar10", path=archive))
    assert ds.x.shape == (12, 3, 32, 32) and ds.modality == "image"
    np.testing.assert_allclose(ds.x, np.concatenate(images) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y, np.concatenate(labels))
    np.testing.assert_array_equal(ds.ids, np.arange(12))
    assert ds.class_names == (*names, "truck")


def _cifar100_archive(
    tmp_path: Path, write_tgz: Callable, train_bytes: bytes, test_bytes: bytes
) -> Path:
    names = "\n".join(f"class_{i}" for i in range(100)).encode()
    return write_tgz(
        tmp_path / "cifar-100-binary.tar.gz",
        {
            "cifar-100-binary/train.bin": train_bytes,
            "cifar-100-binary/test.bin": test_bytes,
            "cifar-100-binary/fine_label_names.txt": names,
            "cifar-100-binary/coarse_label_names.txt": b"ignored\n",
        },
    )


def test_cifar100_uses_the_fine_label(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_tgz: Callable, sha256: Callable
) -> None:
    rng = np.random.default_rng(1)
    train_labels = np.array([[19, 77], [3, 5], [3, 99]])  # (coarse, fine)
    test_labels = np.array([[0, 42]])
    train, _ = _cifar_records(train_labels, rng)
    test, test_images = _cifar_records(test_labels, rng)
    archive = _cifar100_archive(tmp_path, write_tgz, train, test)
    remote = dataclasses.replace(cifar.CIFAR100.remote, sha256=sha256(archive), md5=None)
    monkeypatch.setattr(
        cifar, "CIFAR100", dataclasses.replace(cifar.CIFAR100, remote=remote, n_train=3, n_test=1)
    )
    ds = load_dataset(DatasetConfig(name="cifar100", path=archive))
    np.testing.assert_array_equal(ds.y, [77, 5, 99, 42])
    np.testing.assert_allclose(ds.x[3], test_images[0] / 255.0, rtol=1e-6)
    assert ds.num_classes == 100 and ds.class_names[99] == "class_99"


def test_cifar_truncated_batch_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_tgz: Callable, sha256: Callable
) -> None:
    train, _ = _cifar_records(np.array([[1, 2], [3, 4]]), np.random.default_rng(2))
    archive = _cifar100_archive(tmp_path, write_tgz, train[:-10], train)
    remote = dataclasses.replace(cifar.CIFAR100.remote, sha256=sha256(archive), md5=None)
    monkeypatch.setattr(cifar, "CIFAR100", dataclasses.replace(cifar.CIFAR100, remote=remote))
    with pytest.raises(DataError, match="not a whole number of 3074-byte records"):
        load_dataset(DatasetConfig(name="cifar100", path=archive))


# --- Fashion-MNIST and IDX ----------------------------------------------------------------


@pytest.fixture
def tiny_fashion(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    write_idx_gz: Callable,
    sha256: Callable,
) -> tuple[Path, np.ndarray, np.ndarray]:
    """Four IDX gz files (3 train, 2 test images) with their checksums patched in."""
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([9, 0, 3, 7, 1], dtype=np.uint8)
    folder = tmp_path / "fashion"
    folder.mkdir()
    parts = {
        "train-images": images[:3],
        "train-labels": labels[:3],
        "t10k-images": images[3:],
        "t10k-labels": labels[3:],
    }
    files = {}
    for key, array in parts.items():
        path = write_idx_gz(folder / fashion_mnist.FILES[key].filename, array)
        files[key] = dataclasses.replace(
            fashion_mnist.FILES[key], sha256=sha256(path), md5=None, payload_sha256=None
        )
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    monkeypatch.setattr(fashion_mnist, "SPLIT_SIZES", {"train": 3, "t10k": 2})
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian-package")
    return folder, images, labels


def test_fashion_mnist_train_then_test(tiny_fashion: tuple) -> None:
    folder, images, labels = tiny_fashion
    ds = load_dataset(DatasetConfig(name="fashion-mnist", path=folder, download=False))
    assert ds.x.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(ds.x[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y, labels)
    np.testing.assert_array_equal(ds.ids, np.arange(5))
    assert ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10


def test_fashion_mnist_prefers_the_debian_folder(
    monkeypatch: pytest.MonkeyPatch, tiny_fashion: tuple
) -> None:
    folder, _, labels = tiny_fashion
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", folder)
    ds = load_dataset(DatasetConfig(name="fashion-mnist", download=False))
    np.testing.assert_array_equal(ds.y, labels)


def test_fashion_mnist_wrong_image_count(
    monkeypatch: pytest.MonkeyPatch, tiny_fashion: tuple
) -> None:
    folder, _, _ = tiny_fashion
    monkeypatch.setattr(fashion_mnist, "SPLIT_SIZES", {"train": 4, "t10k": 2})
    with pytest.raises(DataError, match="expected 4 uint8 images of 28x28"):
        load_dataset(DatasetConfig(name="fashion-mnist", path=folder))


def test_truncated_idx_file_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tiny_fashion: tuple, sha256: Callable
) -> None:
    folder, _, _ = tiny_fashion
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    files = dict(fashion_mnist.FILES)
    files["train-images"] = dataclasses.replace(files["train-images"], sha256=sha256(path))
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    with pytest.raises(DataError, match="truncated"):
        load_dataset(DatasetConfig(name="fashion-mnist", path=folder))


def test_truncated_gzip_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tiny_fashion: tuple, sha256: Callable
) -> None:
    folder, _, _ = tiny_fashion
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    files = dict(fashion_mnist.FILES)
    files["t10k-labels"] = dataclasses.replace(files["t10k-labels"], sha256=sha256(path))
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    with pytest.raises(DataError, match="not a complete gzip file"):
        load_dataset(DatasetConfig(name="fashion-mnist", path=folder))


def test_parse_idx_reads_big_endian_sizes_and_types() -> None:
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    data = struct.pack(">HBBII", 0, 0x0C, 2, 2, 3) + values.tobytes()
    parsed = parse_idx(data, "t")
    np.testing.assert_array_equal(parsed, values)
    assert parsed.dtype == np.int32
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(b"\x01\x00\x08\x01" + data[4:], "t")
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_idx(data[:9], "t")
    with pytest.raises(DataError, match="extra bytes"):
        parse_idx(data + b"\x00", "t")


# --- npz and csv -------------------------------------------------------------------------


def test_npz_images_tabular_and_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    y = np.array([0, 2, 1, 2])
    path = tmp_path / "images.npz"
    pixels = rng.integers(0, 256, size=(4, 6, 6), dtype=np.uint8)
    np.savez(path, x=pixels, y=y, ids=np.array(["a", "b", "c", "d"]))
    ds = load_dataset(DatasetConfig(name="npz", path=path, allow_many_classes=True))
    assert ds.modality == "image" and ds.x.shape == (4, 1, 6, 6)
    np.testing.assert_allclose(ds.x[:, 0], pixels / 255.0, rtol=1e-6)
    assert ds.num_classes == 3 and ds.ids.tolist() == ["a", "b", "c", "d"]

    np.savez(path, x=rng.normal(size=(4, 2, 3, 3)), y=y)
    tiny = DatasetConfig(name="npz", path=path, allow_many_classes=True)  # 3 classes, 4 rows
    assert load_dataset(tiny).x.shape == (4, 2, 3, 3)
    np.savez(path, x=rng.normal(size=(4, 5)), y=y)
    ds = load_dataset(tiny)
    assert ds.modality == "tabular" and ds.ids.tolist() == [0, 1, 2, 3]


def test_npz_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((3, 2)))
    with pytest.raises(DataError, match="lacks the array"):
        load_dataset(DatasetConfig(name="npz", path=path))
    np.savez(path, x=np.zeros(3), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match="x must have shape"):
        load_dataset(DatasetConfig(name="npz", path=path))
    np.savez(path, x=np.array([{"a": 1}, None, 3], dtype=object), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match="pickle"):
        load_dataset(DatasetConfig(name="npz", path=path))
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError, match="2 entries but there are 3 samples"):
        load_dataset(DatasetConfig(name="npz", path=path))
    with pytest.raises(ConfigError, match="needs `path`"):
        load_dataset("npz")


def test_csv_string_labels_and_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "id,species,height,weight\np7,dog,0.5,10\np2,cat,0.3,4\n\np9,dog,0.6,12\np1,emu,1.7,40\n"
    )
    config = DatasetConfig(
        name="csv", path=path, label_column="species", id_column="id", allow_many_classes=True
    )
    ds = load_dataset(config)
    assert ds.class_names == ("cat", "dog", "emu")
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 2])
    np.testing.assert_allclose(ds.x, [[0.5, 10], [0.3, 4], [0.6, 12], [1.7, 40]])
    assert ds.ids.tolist() == ["p7", "p2", "p9", "p1"]


def test_csv_integer_labels_default_to_the_column_named_label(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,label,b\n1,10,2\n3,2,4\n5,10,6\n7,2,8\n")
    ds = load_dataset(DatasetConfig(name="csv", path=path))
    assert ds.class_names == ds.label_values == ("2", "10")  # sorted as numbers
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 0])
    np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    ds = load_dataset(DatasetConfig(name="csv", path=path, label_column=0, allow_many_classes=True))
    assert ds.class_names == ("1", "3", "5", "7") and ds.x.shape == (4, 2)


def test_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    with pytest.raises(DataError, match=r"line 3, column 'b' holds 'oops'"):
        load_dataset(DatasetConfig(name="csv", path=path))
    path.write_text("a,b,label\n1,2,x\n3,y\n")
    with pytest.raises(DataError, match="line 3 has 2 cells but the header has 3"):
        load_dataset(DatasetConfig(name="csv", path=path))
    path.write_text("a,b,label\n1,2,x\n3,4,y\n")
    with pytest.raises(ConfigError, match=r"'kind' is not a column.*a, b, label"):
        load_dataset(DatasetConfig(name="csv", path=path, label_column="kind"))
    with pytest.raises(ConfigError, match="both name column 'a'"):
        load_dataset(DatasetConfig(name="csv", path=path, label_column="a", id_column=0))
    with pytest.raises(ConfigError, match="needs `path`"):
        load_dataset("csv")


# --- the real files, when this machine has them ------------------------------------------


def test_real_location30(data_home: Path, location30_archive: Path) -> None:
    data_home.mkdir()
    (data_home / "dataset_location.tgz").symlink_to(location30_archive)
    ds = load_dataset(DatasetConfig(name="location30", download=False))
    assert ds.x.shape == (5010, 446)
    assert ds.num_classes == 30
    assert ds.y.min() == 0 and ds.y.max() == 29 and np.unique(ds.y).size == 30
    assert set(np.unique(ds.x).tolist()) == {0.0, 1.0}


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist")
def test_real_fashion_mnist() -> None:
    ds = load_dataset(DatasetConfig(name="fashion-mnist", download=False))
    assert len(ds) == 70000 and ds.x.shape[1:] == (1, 28, 28)
    assert ds.num_classes == 10
    np.testing.assert_array_equal(np.bincount(ds.y), [7000] * 10)
