"""Tests for tfvae.data.datasets: file formats, splits, binarization, errors (no network)."""

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error

import numpy as np
import pytest

from tfvae.data import datasets as data
from tfvae.data import files as data_files

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def empty_keras_cache(tmp_path, monkeypatch):
    """Points HOME and KERAS_HOME at empty folders: no real cache is used."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    return tmp_path / "keras_home" / "datasets"


def _fake_mnist(num_train=12, num_test=4, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, num_train).astype(np.uint8),
            rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, num_test).astype(np.uint8))


def _idx_bytes(array):
    magic = 2048 + array.ndim  # 2049 labels, 2051 images.
    header = np.array([magic, *array.shape], ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_idx(directory, arrays, compress):
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(IDX_STEMS, arrays):
        if compress:
            with gzip.open(directory / (stem + ".gz"), "wb") as f:
                f.write(_idx_bytes(array))
        else:
            (directory / stem).write_bytes(_idx_bytes(array))


def _cifar_images(num):
    n, y, x, c = np.meshgrid(np.arange(num), np.arange(32), np.arange(32),
                             np.arange(3), indexing="ij")
    return ((n * 7 + y * 3 + x * 5 + c * 50) % 256).astype(np.uint8)


def _cifar_batch_bytes(images, labels):
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # NHWC -> NCHW
    return pickle.dumps({b"data": rows, b"labels": [int(v) for v in labels]})


def _write_cifar(directory, as_tar):
    images, labels = _cifar_images(12), np.arange(12) % 10
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    blobs = [_cifar_batch_bytes(images[2 * i:2 * i + 2], labels[2 * i:2 * i + 2])
             for i in range(6)]
    directory.mkdir(parents=True, exist_ok=True)
    if as_tar:
        with tarfile.open(directory / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, blob in zip(names, blobs):
                member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                member.size = len(blob)
                tar.addfile(member, io.BytesIO(blob))
    else:
        folder = directory / "cifar-10-batches-py"
        folder.mkdir()
        for name, blob in zip(names, blobs):
            (folder / name).write_bytes(blob)
    return images, labels


def _write_amat(directory, sizes=(5, 3, 2), seed=2):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for part, size in zip(("train", "valid", "test"), sizes):
        array = rng.integers(0, 2, (size, 784))
        text = "\n".join(" ".join(map(str, row)) for row in array) + "\n"
        (directory / f"binarized_mnist_{part}.amat").write_text(text)
        arrays.append(array.reshape(size, 28, 28, 1))
    return arrays


def _epoch(dataset):
    batches = list(dataset.as_numpy_iterator())
    return (np.concatenate([b["image"] for b in batches]),
            np.concatenate([b["label"] for b in batches]))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_load_with_validation_carved_from_train_end(
        tmp_path, name, compress):
    x_train, y_train, x_test, y_test = _fake_mnist()
    _write_idx(tmp_path, (x_train, y_train, x_test, y_test), compress)
    train = data.load_arrays(name, "train", data_dir=str(tmp_path), download=False)
    valid = data.load_arrays(name, "validation", data_dir=str(tmp_path),
                             download=False)
    test = data.load_arrays(name, "test", data_dir=str(tmp_path), download=False)
    # 1/6 of the official training set is validation: 2 of 12, the last two.
    assert train[0].shape == (10, 28, 28, 1) and valid[0].shape == (2, 28, 28, 1)
    assert train[0].dtype == np.uint8 and train[1].dtype == np.int64
    np.testing.assert_array_equal(train[0][..., 0], x_train[:10])
    np.testing.assert_array_equal(valid[0][..., 0], x_train[10:])
    np.testing.assert_array_equal(valid[1], y_train[10:])
    np.testing.assert_array_equal(test[0][..., 0], x_test)
    np.testing.assert_array_equal(test[1], y_test)


def test_mnist_npz_and_dataset_subfolder(tmp_path):
    x_train, y_train, x_test, y_test = _fake_mnist(num_train=6, num_test=3)
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "mnist.npz", x_train=x_train, y_train=y_train,
             x_test=x_test, y_test=y_test)
    images, labels = data.load_arrays("mnist", "train", data_dir=str(tmp_path),
                                      download=False)
    np.testing.assert_array_equal(images[..., 0], x_train[:5])
    np.testing.assert_array_equal(labels, y_train[:5])


def test_make_dataset_scales_uint8_to_unit_interval(tmp_path):
    x_train, y_train, x_test, y_test = _fake_mnist()
    _write_idx(tmp_path, (x_train, y_train, x_test, y_test), compress=True)
    dataset = data.make_dataset("mnist", "test", batch_size=3,
                                data_dir=str(tmp_path), download=False)
    batches = list(dataset.as_numpy_iterator())
    assert [len(b["label"]) for b in batches] == [3, 1]
    assert batches[0]["image"].dtype == np.float32
    assert batches[0]["label"].dtype == np.int64
    images, labels = _epoch(dataset)
    np.testing.assert_allclose(images[..., 0], x_test / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, y_test)
    dropped = data.make_dataset("mnist", "test", batch_size=3, drop_remainder=True,
                                data_dir=str(tmp_path), download=False)
    assert [len(b["label"]) for b in dropped.as_numpy_iterator()] == [3]


def test_corrupt_idx_file_is_reported(tmp_path):
    _write_idx(tmp_path, _fake_mnist(), compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x02oops")
    with pytest.raises(ValueError, match="Corrupt IDX file .*magic number 2050"):
        data.load_arrays("fashion_mnist", "test", data_dir=str(tmp_path),
                         download=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(_idx_bytes(np.zeros(5, np.uint8))[:-1])  # One byte short.
    with pytest.raises(ValueError, match="header gives shape"):
        data.load_arrays("mnist", "test", data_dir=str(tmp_path), download=False)


@pytest.mark.parametrize("as_tar", [True, False])
def test_cifar_pickles_are_transposed_to_nhwc(tmp_path, as_tar):
    images, labels = _write_cifar(tmp_path, as_tar)
    train = data.load_arrays("cifar10", "train", data_dir=str(tmp_path),
                             download=False)
    valid = data.load_arrays("cifar10", "validation", data_dir=str(tmp_path),
                             download=False)
    test = data.load_arrays("cifar10", "test", data_dir=str(tmp_path),
                            download=False)
    assert train[0].shape == (9, 32, 32, 3) and valid[0].shape == (1, 32, 32, 3)
    # Pixel [0, y, x, c] of the known image: (3y + 5x + 50c) mod 256.
    assert train[0][0, 4, 9, 2] == (3 * 4 + 5 * 9 + 50 * 2) % 256
    assert train[0][0, 31, 0, 1] == (3 * 31 + 50) % 256
    np.testing.assert_array_equal(train[0], images[:9])
    np.testing.assert_array_equal(valid[0], images[9:10])
    np.testing.assert_array_equal(test[0], images[10:])
    np.testing.assert_array_equal(test[1], labels[10:])


def test_cifar_pickle_with_foreign_class_is_refused(tmp_path):
    _write_cifar(tmp_path, as_tar=False)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({b"data": os.getcwd, b"labels": []}))
    with pytest.raises(ValueError, match="Corrupt CIFAR batch .*posix.getcwd"):
        data.load_arrays("cifar10", "test", data_dir=str(tmp_path),
                         download=False)


def test_binarized_mnist_amat_files(tmp_path):
    train, valid, test = _write_amat(tmp_path / "binarized_mnist")
    for split, expected in zip(data.SPLITS, (train, valid, test)):
        images, labels = data.load_arrays("binarized_mnist", split,
                                          data_dir=str(tmp_path), download=False)
        np.testing.assert_array_equal(images, expected)
        np.testing.assert_array_equal(labels, -np.ones(len(expected)))
    images, _ = _epoch(data.make_dataset("binarized_mnist", "test",
                                         batch_size=4, data_dir=str(tmp_path),
                                         download=False))
    np.testing.assert_array_equal(images, test.astype(np.float32))
    (tmp_path / "binarized_mnist" / "binarized_mnist_test.amat").write_text("0 1 2\n")
    with pytest.raises(ValueError, match="Corrupt .amat file"):
        data.load_arrays("binarized_mnist", "test", data_dir=str(tmp_path),
                         download=False)


def test_fashion_mnist_from_debian_package():
    if not os.path.isdir(data.DEBIAN_FASHION_MNIST_DIR):
        pytest.skip("Debian package dataset-fashion-mnist is not installed.")
    sizes = {}
    for split in data.SPLITS:
        images, labels = data.load_arrays("fashion_mnist", split, download=False)
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        assert images.shape[1:] == (28, 28, 1)
        assert images.min() == 0 and images.max() == 255
        np.testing.assert_array_equal(np.unique(labels), np.arange(10))
        sizes[split] = len(images)
    assert sizes == data.info("fashion_mnist").splits
    assert sizes == {"train": 50000, "validation": 10000, "test": 10000}


def test_digits_splits():
    pytest.importorskip("sklearn")
    for split, size in data.info("digits").splits.items():
        images, labels = data.load_arrays("digits", split)
        assert images.shape == (size, 8, 8, 1) and images.dtype == np.uint8
        assert labels.shape == (size,) and labels.dtype == np.int64
    assert [len(data.load_arrays("digits", s)[0]) for s in data.SPLITS] == [
        1297, 200, 300]
    images, _ = data.load_arrays("digits", "train")
    assert images.max() == 255  # 16 * 255 / 16.


def test_dynamic_binarization_redraws_each_epoch_reproducibly():
    pytest.importorskip("sklearn")

    def make(seed):
        return data.make_dataset("digits", "train", batch_size=256,
                                 binarize="dynamic", seed=seed, shuffle=False)

    grey, _ = _epoch(data.make_dataset("digits", "train", batch_size=256))
    dataset = make(seed=3)
    first, second = _epoch(dataset)[0], _epoch(dataset)[0]
    assert set(np.unique(first)) <= {0.0, 1.0}
    assert abs(first.mean() - grey.mean()) < 0.01  # Bernoulli(x) keeps the mean.
    assert not np.array_equal(first, second)
    fresh = make(seed=3)
    np.testing.assert_array_equal(_epoch(fresh)[0], first)
    np.testing.assert_array_equal(_epoch(fresh)[0], second)
    assert not np.array_equal(_epoch(make(seed=4))[0], first)


def test_static_binarization_is_fixed_across_epochs():
    pytest.importorskip("sklearn")
    dataset = data.make_dataset("digits", "test", batch_size=64, binarize="static",
                                seed=5)
    first, second = _epoch(dataset)[0], _epoch(dataset)[0]
    np.testing.assert_array_equal(first, second)
    assert set(np.unique(first)) <= {0.0, 1.0}
    grey, _ = _epoch(data.make_dataset("digits", "test", batch_size=64))
    assert abs(first.mean() - grey.mean()) < 0.02
    other = _epoch(data.make_dataset("digits", "test", batch_size=64,
                                     binarize="static", seed=6))[0]
    assert not np.array_equal(first, other)


def test_shuffling_is_seeded_and_reshuffles_each_epoch():
    pytest.importorskip("sklearn")
    _, ordered = data.load_arrays("digits", "validation")
    dataset = data.make_dataset("digits", "validation", batch_size=50, shuffle=True,
                                seed=7)
    epoch1, epoch2 = _epoch(dataset)[1], _epoch(dataset)[1]
    assert not np.array_equal(epoch1, ordered) and not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(np.sort(epoch1), np.sort(ordered))
    fresh = data.make_dataset("digits", "validation", batch_size=50, shuffle=True,
                              seed=7)
    np.testing.assert_array_equal(_epoch(fresh)[1], epoch1)
    np.testing.assert_array_equal(_epoch(fresh)[1], epoch2)
    # Default: only the training split is shuffled; max_examples cuts first.
    default = data.make_dataset("digits", "validation", batch_size=50,
                                max_examples=30)
    np.testing.assert_array_equal(_epoch(default)[1], ordered[:30])
    train = data.make_dataset("digits", "train", batch_size=2000, max_examples=40)
    labels = _epoch(train)[1]
    train_ordered = data.load_arrays("digits", "train")[1][:40]
    assert not np.array_equal(labels, train_ordered)
    np.testing.assert_array_equal(np.sort(labels), np.sort(train_ordered))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10",
                                  "binarized_mnist"])
def test_not_found_error_names_dataset_and_places(tmp_path, monkeypatch,
                                                  empty_keras_cache, name):
    absent_debian = tmp_path / "no-debian"
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", str(absent_debian))
    with pytest.raises(data.DataNotFoundError) as raised:
        data.load_arrays(name, "train", download=False)
    message = str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert repr(name) in message and "download=False" in message
    assert str(empty_keras_cache) in message
    assert "--data_dir" in message
    if name == "fashion_mnist":
        assert str(absent_debian) in message and "dataset-fashion-mnist" in message
        assert "train-images-idx3-ubyte" in message
    # TensorFlow Datasets' folder for it, with nothing prepared there.
    assert f"{tmp_path / 'tensorflow_datasets' / name} (TensorFlow Datasets, prepared)" in message


def _store_tfds(directory, name, splits):
    """Prepares `name` in the TensorFlow Datasets folder `directory` from arrays, as
    `tfds build` would (dataset_info.json, features.json, TFRecord shards)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    images = next(iter(splits.values()))[0]
    features = {"image": tfds.features.Image(shape=images.shape[1:])}
    if next(iter(splits.values()))[1] is not None:
        features["label"] = tfds.features.ClassLabel(num_classes=10)
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", data_dir=str(directory),
        split_datasets={split: tf.data.Dataset.from_tensor_slices(
            {"image": x, **({"label": y} if y is not None else {})})
            for split, (x, y) in splits.items()},
        features=tfds.features.FeaturesDict(features))


def test_tensorflow_datasets_prepared_copy_is_a_source_after_the_local_ones(
        tmp_path, monkeypatch):
    """A dataset prepared by TensorFlow Datasets is read from its folder (nothing is
    downloaded); splits and labels as from the files, validation carved from train."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "no-debian"))
    rng = np.random.default_rng(4)
    train = (rng.integers(0, 256, (12, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 12))
    test = (rng.integers(0, 256, (4, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 4))
    # TensorFlow Datasets shuffles examples when it writes them: compare as sets of rows.
    _store_tfds(tmp_path / "tensorflow_datasets", "fashion_mnist", {"train": train, "test": test})
    got = {split: data.load_arrays("fashion_mnist", split, download=False) for split in
           data.SPLITS}
    assert [len(got[s][0]) for s in data.SPLITS] == [10, 2, 4]     # 1/6 of train: validation
    def rows(images, labels):
        return sorted((int(l), i.tobytes()) for i, l in zip(images, labels))
    assert rows(*test) == rows(*got["test"])
    assert rows(*train) == rows(np.concatenate([got["train"][0], got["validation"][0]]),
                                np.concatenate([got["train"][1], got["validation"][1]]))
    assert got["test"][0].dtype == np.uint8 and got["test"][1].dtype == np.int64
    # Binarized MNIST has its own validation split and no labels (-1).
    splits = {s: ((rng.random((n, 28, 28, 1)) < 0.5).astype(np.uint8), None)
              for s, n in zip(data.SPLITS, (5, 3, 2))}
    _store_tfds(tmp_path / "tensorflow_datasets", "binarized_mnist", splits)
    for split, (images, _) in splits.items():
        loaded, labels = data.load_arrays("binarized_mnist", split, download=False)
        assert sorted(map(bytes, loaded)) == sorted(map(bytes, images))
        np.testing.assert_array_equal(labels, -1)


def test_local_files_come_before_tensorflow_datasets(tmp_path, empty_keras_cache):
    rng = np.random.default_rng(5)
    fake = (rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 6))
    _store_tfds(tmp_path / "tensorflow_datasets", "mnist", {"train": fake, "test": fake})
    x_train, y_train, x_test, y_test = _fake_mnist(num_train=6, num_test=3)
    empty_keras_cache.mkdir(parents=True)
    np.savez(empty_keras_cache / "mnist.npz", x_train=x_train, y_train=y_train,
             x_test=x_test, y_test=y_test)
    images, _ = data.load_arrays("mnist", "test", download=False)
    np.testing.assert_array_equal(images[..., 0], x_test)   # the Keras cache's 3, not tfds' 6


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "binarized_mnist"])
def test_an_explicit_data_dir_is_used_alone(tmp_path, name):
    """An empty or partial --data_dir is refused, naming it; it never falls back to the
    Keras cache, Debian's copy (installed here for fashion_mnist) or a download."""
    empty = tmp_path / "empty"
    empty.mkdir()
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train-images-idx3-ubyte.gz").write_bytes(b"")         # one file of four
    for folder in (empty, partial):
        with pytest.raises(data.DataNotFoundError, match="An explicit data_dir is used alone"
                           ) as raised:
            data.load_arrays(name, "train", data_dir=str(folder), download=True)
        assert f"Received: data_dir={str(folder)!r}" in str(raised.value)


def test_failed_download_is_reported_not_raised_raw(tmp_path, monkeypatch):
    def offline(url, path, timeout):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(data_files, "fetch", offline)
    with pytest.raises(data.DataNotFoundError, match="failed: .*no network"):
        data.load_arrays("mnist", "test")


def test_download_checks_sha256_and_deletes_bad_file(monkeypatch,
                                                     empty_keras_cache):
    def fake_fetch(url, path, timeout):
        with open(path, "wb") as f:
            f.write(b"not the real mnist.npz")

    monkeypatch.setattr(data_files, "fetch", fake_fetch)
    got = hashlib.sha256(b"not the real mnist.npz").hexdigest()
    expected = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
    with pytest.raises(ValueError, match=f"expected {expected}, got {got}"):
        data.load_arrays("mnist", "train")
    assert not os.listdir(empty_keras_cache)  # Neither the file nor a `.part`.


def test_download_with_matching_sha256_lands_in_keras_cache(
        tmp_path, monkeypatch, empty_keras_cache):
    x_train, y_train, x_test, y_test = _fake_mnist(num_train=6, num_test=2)
    source = tmp_path / "served.npz"
    np.savez(source, x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    subdir, ((filename, url, _),) = data._DOWNLOADS["mnist"]
    monkeypatch.setitem(data._DOWNLOADS, "mnist",
                        (subdir, ((filename, url, sha256),)))
    monkeypatch.setattr(data_files, "fetch",
                        lambda url, path, timeout: os.link(source, path))
    images, _ = data.load_arrays("mnist", "test")
    np.testing.assert_array_equal(images[..., 0], x_test)
    assert (empty_keras_cache / "mnist.npz").is_file()


def test_invalid_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="Received: name='svhn'") as raised:
        data.info("svhn")
    assert "mnist, binarized_mnist, fashion_mnist, cifar10, digits" in str(
        raised.value)
    with pytest.raises(ValueError, match="Received: split='valid'"):
        data.load_arrays("digits", "valid")
    with pytest.raises(ValueError, match="Received: binarize='stochastic'"):
        data.make_dataset("digits", "train", 8, binarize="stochastic")
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=f"Received: batch_size={bad!r}"):
            data.make_dataset("digits", "train", bad)
    with pytest.raises(ValueError, match="Received: max_examples=0"):
        data.make_dataset("digits", "train", 8, max_examples=0)
    missing = str(tmp_path / "missing")
    with pytest.raises(ValueError, match=f"Received: data_dir='{missing}'"):
        data.load_arrays("mnist", "train", data_dir=missing)


def test_info_returns_an_independent_copy():
    info = data.info("cifar10")
    assert info.image_shape == (32, 32, 3) and info.num_bits == 8
    info.splits["train"] = 1
    assert data.info("cifar10").splits["train"] == 45000
    assert data.info("binarized_mnist").num_bits == 1


def test_validate_images():
    good = np.full((2, 4, 4, 1), 0.5, np.float64)
    checked = data.validate_images(good, image_shape=(4, 4, 1))
    assert checked.dtype == np.float32 and checked.shape == (2, 4, 4, 1)
    with pytest.raises(ValueError, match=r"`x` must have rank 4.*shape=\(4, 4, 1\)"):
        data.validate_images(good[0], name="x")
    with pytest.raises(ValueError, match=r"expected.*Received: shape=\(2, 4, 4, 1\)"):
        data.validate_images(good, image_shape=(28, 28, 1))
    bad = good.copy()
    bad[0, 0, 0, 0], bad[1, 1, 1, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match="contains 2 non-finite values"):
        data.validate_images(bad)
    bad = good.copy()
    bad[0, 0, 0, 0] = 255.0
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\].*max=255"):
        data.validate_images(bad)
    data.validate_images(bad, value_range=(0, 255))
