"""Named image datasets as deterministic `tf.data` pipelines.

Each dataset is looked for, in this order: a user `data_dir` (used alone when
given), the Keras cache (`$KERAS_HOME/datasets`, default `~/.keras/datasets`),
Debian's `/usr/share/datasets/fashion-mnist` (Fashion-MNIST only), TensorFlow
Datasets' prepared copy when `tensorflow_datasets` is installed (its data
folder, `$TFDS_DATA_DIR` or `~/tensorflow_datasets`: users with internet
prepare MNIST, binarized MNIST, CIFAR-10 that way; tfds is never asked to
download), and finally the standard download into the Keras cache, checked
against its SHA-256. When none works, one `DataNotFoundError` names every
place looked at.

Validation sets are carved deterministically: from the end of the official
training set (MNIST, Fashion-MNIST, CIFAR-10), from the official files
(binarized MNIST, Larochelle & Murray 2011) or from a fixed permutation
(scikit-learn's digits); `image_patches` cuts 32x32x3 patches from fixed
column strips of scikit-learn's sample photographs (`tfvae.data.image_patches`).
Example:

    for batch in make_dataset("mnist", "train", 128, binarize="dynamic"):
        batch["image"]  # float32 [128, 28, 28, 1], batch["label"]: int64 [128]
"""

import dataclasses
import functools
import os
import re

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae.data import files as data_files
from tfvae.data import image_patches
from tfvae import streams
from tfvae.data import toy_data
from tfvae import validation

DATASETS = ("mnist", "binarized_mnist", "fashion_mnist", "cifar10", "digits",
            "image_patches", *toy_data.TOY_DATASETS)
SPLITS = ("train", "validation", "test")
BINARIZE = ("none", "dynamic", "static")
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DOWNLOAD_TIMEOUT_SECONDS = 30


class DataNotFoundError(ValueError):
    """No local copy of a dataset was found and it could not be downloaded."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of a named dataset.

    Attributes:
      name: one of `DATASETS`.
      image_shape: `(height, width, channels)` of one image, or `(2,)` for a
        point of a 2-D toy density.
      num_classes: number of label classes; 0 when the data has no labels
        (binarized MNIST, whose labels are all -1, and the toy densities).
      num_bits: bits per pixel value: 8 for uint8 data, 1 for binary data,
        0 for continuous data (the toy densities).
      splits: official sizes, `{"train": n, "validation": n, "test": n}`.
    """

    name: str
    image_shape: tuple
    num_classes: int
    num_bits: int
    splits: dict


_INFOS = {
    name: DatasetInfo(name, shape, classes, bits, dict(zip(SPLITS, sizes)))
    for name, shape, classes, bits, sizes in (
        ("mnist", (28, 28, 1), 10, 8, (50000, 10000, 10000)),
        ("binarized_mnist", (28, 28, 1), 0, 1, (50000, 10000, 10000)),
        ("fashion_mnist", (28, 28, 1), 10, 8, (50000, 10000, 10000)),
        ("cifar10", (32, 32, 3), 10, 8, (45000, 5000, 10000)),
        ("digits", (8, 8, 1), 10, 8, (1297, 200, 300)),
        ("image_patches", (32, 32, 3), 0, 8, (4500, 250, 450)),
        *((toy, (2,), 0, 0, tuple(toy_data.SPLIT_SIZES.values()))
          for toy in toy_data.TOY_DATASETS))
}
_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_AMAT_FILES = tuple(f"binarized_mnist_{p}.amat" for p in ("train", "valid", "test"))
_CIFAR_TAR, _CIFAR_DIR = data_files.CIFAR_TAR, data_files.CIFAR_DIR

# Per dataset: the file formats tried in each folder, the subfolders looked
# into below `data_dir` and below the Keras cache ("" is the folder itself;
# the Keras cache layout is that of `keras.datasets.*.load_data`).
_LAYOUTS = {
    "mnist": (("npz", "idx"), ("", "mnist"), ("",)),
    "fashion_mnist": (("idx",), ("", "fashion-mnist", "fashion_mnist"),
                      ("fashion-mnist",)),
    "binarized_mnist": (("amat",), ("", "binarized_mnist", "binarized-mnist"),
                        ("binarized_mnist",)),
    "cifar10": (("cifar_dir", "cifar_tar"), ("", _CIFAR_DIR, "cifar10"),
                ("", _CIFAR_DIR, os.path.join(_CIFAR_DIR, _CIFAR_DIR))),
}
_IDX_NAMES = "the IDX files " + ", ".join(s + "[.gz]" for s in _IDX_STEMS)
_EXPECTED_FILES = {
    "mnist": f"mnist.npz (Keras format) or {_IDX_NAMES}",
    "fashion_mnist": _IDX_NAMES,
    "binarized_mnist": ", ".join(_AMAT_FILES),
    "cifar10": f"{_CIFAR_TAR} or its extracted folder {_CIFAR_DIR}/",
}

# Downloads: (Keras-cache subfolder, ((file name, URL, SHA-256), ...)).
# Hashes: keras-team/keras keras/src/datasets/{mnist,fashion_mnist,cifar10}.py
# and tensorflow/datasets tensorflow_datasets/url_checksums/*.txt.
_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_DOWNLOADS = {
    "mnist": ("", (
        ("mnist.npz", _KERAS_URL + "mnist.npz",
         "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),)),
    "fashion_mnist": ("fashion-mnist", tuple(
        (stem + ".gz", _KERAS_URL + stem + ".gz", sha256) for stem, sha256 in zip(
            _IDX_STEMS,
            ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
             "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
             "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
             "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5")))),
    "cifar10": ("", (
        (_CIFAR_TAR, "https://www.cs.toronto.edu/~kriz/" + _CIFAR_TAR,
         "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),)),
    "binarized_mnist": ("binarized_mnist", tuple(
        (filename, _AMAT_URL + filename, sha256) for filename, sha256 in zip(
            _AMAT_FILES,
            ("ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
             "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
             "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c")))),
}


def info(name):
    """Returns the `DatasetInfo` of dataset `name`.

    Raises:
      ValueError: if `name` is not one of `DATASETS`.
    """
    validation.one_of("name", name, DATASETS)
    dataset_info = _INFOS[name]
    return dataclasses.replace(dataset_info, splits=dict(dataset_info.splits))


def keras_datasets_dir():
    """Returns Keras' dataset cache: `$KERAS_HOME/datasets` or `~/.keras/datasets`."""
    keras_home = (os.environ.get("KERAS_HOME")
                  or os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(keras_home, "datasets")


def _stamp(path):
    """(mtime, size) of the file(s) at `path`: invalidates `_parse`'s cache."""
    files = ([os.path.join(path, b) for b in data_files.CIFAR_BATCHES]
             if os.path.isdir(path) else [path])
    return tuple((os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files)


@functools.lru_cache(maxsize=4)
def _parse(file_format, paths, stamps):  # pylint: disable=unused-argument
    """Parses a located file set into {split: (images, labels)} (read-only).

    Cached in-process on the resolved paths and their `stamps`, so each file
    is parsed once, and again only when it changes.
    """
    if file_format == "npz":
        with np.load(paths[0], allow_pickle=False) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise ValueError(f"{paths[0]} lacks the arrays {sorted(missing)}.")
            splits = {"train": (f["x_train"][..., None], f["y_train"]),
                      "test": (f["x_test"][..., None], f["y_test"])}
    elif file_format == "idx":
        splits = {"train": data_files.read_idx_pair(*paths[:2]),
                  "test": data_files.read_idx_pair(*paths[2:])}
    elif file_format == "amat":
        splits = dict(zip(SPLITS, (data_files.read_amat(p) for p in paths)))
    elif file_format == "tfds":
        splits = _read_tfds(os.path.dirname(paths[0]))
    else:
        splits = data_files.read_cifar(paths[0], is_tar=file_format == "cifar_tar")
    result = {}
    for split, (images, labels) in splits.items():
        images = np.ascontiguousarray(images, np.uint8)
        labels = np.asarray(labels, np.int64)
        images.flags.writeable = labels.flags.writeable = False
        result[split] = (images, labels)
    return result


def _existing(directory, *names):
    """Returns the first `directory/name` that is a file, else None."""
    paths = (os.path.join(directory, name) for name in names)
    return next((path for path in paths if os.path.isfile(path)), None)


def _find_in(directory, name):
    """Returns (format, paths) of a complete file set in `directory`, or None."""
    for file_format in _LAYOUTS[name][0]:
        if file_format == "npz":
            paths = [_existing(directory, "mnist.npz")]
        elif file_format == "idx":
            paths = [_existing(directory, stem + ".gz", stem) for stem in _IDX_STEMS]
        elif file_format == "amat":
            paths = [_existing(directory, f) for f in _AMAT_FILES]
        elif file_format == "cifar_tar":
            paths = [_existing(directory, _CIFAR_TAR)]
        else:
            has_batches = all(_existing(directory, b) for b in data_files.CIFAR_BATCHES)
            paths = [directory if has_batches else None]
        if all(paths):
            return file_format, tuple(os.path.realpath(p) for p in paths)
    return None


def _tfds():
    """The `tensorflow_datasets` module, or None where it is not installed."""
    try:
        import tensorflow_datasets  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return tensorflow_datasets


def tfds_data_dir():
    """TensorFlow Datasets' data folder: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`."""
    return (os.environ.get("TFDS_DATA_DIR")
            or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def _find_tfds(name):
    """(("tfds", (its dataset_info.json,)), the folder looked at) for the newest version
    of `name` that TensorFlow Datasets has prepared; (None, the folder) where it has
    none, or (None, None) without tfds. Nothing is downloaded."""
    if _tfds() is None:
        return None, None
    folder = os.path.join(tfds_data_dir(), name)
    versions = [v for v in (os.listdir(folder) if os.path.isdir(folder) else ())
                if re.fullmatch(r"\d+\.\d+\.\d+", v)
                and os.path.isfile(os.path.join(folder, v, "dataset_info.json"))]
    if not versions:
        return None, folder
    newest = max(versions, key=lambda v: tuple(int(part) for part in v.split(".")))
    directory = os.path.join(folder, newest)
    return ("tfds", (os.path.realpath(os.path.join(directory, "dataset_info.json")),)), directory


def _read_tfds(directory):
    """{split: (images, labels)} of a prepared TensorFlow Datasets folder (labels -1
    where the dataset has none, e.g. binarized MNIST)."""
    tfds = _tfds()
    builder = tfds.builder_from_directory(directory)
    splits = {}
    for split in builder.info.splits:
        arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        images = arrays["image"]
        labels = arrays.get("label", np.full(len(images), -1, np.int64))
        splits[split] = (images, labels)
    return splits


def _locate(name, data_dir, download):
    """Finds (or downloads) the files of `name`; returns (format, paths)."""
    keras_dir = keras_datasets_dir()
    _, data_dir_subdirs, keras_subdirs = _LAYOUTS[name]
    if data_dir is not None:
        # An explicit data_dir is the user's choice: used alone, never silently replaced.
        for directory in (os.path.join(data_dir, s) for s in data_dir_subdirs):
            found = _find_in(directory, name)
            if found:
                logging.info("Loading %s from %s (data_dir).", name, directory)
                return found
        raise DataNotFoundError(
            f"Dataset {name!r} not found in `data_dir` (--data_dir): it holds no complete "
            f"file set ({_EXPECTED_FILES[name]}, in it or in a subfolder named like the "
            f"dataset). An explicit data_dir is used alone: fix it or leave it unset. "
            f"Received: data_dir={data_dir!r}")
    candidates = [(os.path.join(keras_dir, s), "Keras cache") for s in keras_subdirs]
    if name == "fashion_mnist":
        candidates.append((DEBIAN_FASHION_MNIST_DIR, "Debian package"))
    for directory, source in candidates:
        found = _find_in(directory, name)
        if found:
            logging.info("Loading %s from %s (%s).", name, directory, source)
            return found
    found, tfds_dir = _find_tfds(name)
    if found:
        logging.info("Loading %s from %s (TensorFlow Datasets).", name, tfds_dir)
        return found
    candidates.append((tfds_dir, "TensorFlow Datasets, prepared") if tfds_dir
                      else ("tensorflow_datasets", "not installed"))
    download_dir = os.path.join(keras_dir, _DOWNLOADS[name][0])
    if not download:
        outcome = "download disabled (download=False)"
    else:
        try:
            data_files.download_verified(_DOWNLOADS[name][1], download_dir,
                                         DOWNLOAD_TIMEOUT_SECONDS)
            return _find_in(download_dir, name)
        except OSError as error:
            outcome = f"download into {download_dir} failed: {error}"
    places = "\n".join(f"  - {os.path.normpath(d)} ({s})" for d, s in candidates)
    hint = (f"\nor install the Debian package dataset-fashion-mnist (files in "
            f"{DEBIAN_FASHION_MNIST_DIR})" if name == "fashion_mnist" else "")
    raise DataNotFoundError(
        f"Dataset {name!r} not found. Looked in:\n{places}\nDownload: {outcome}.\n"
        f"Supply the files with data_dir (--data_dir) pointing to a folder "
        f"holding {_EXPECTED_FILES[name]}{hint}.")


@functools.lru_cache(maxsize=1)
def _load_digits():
    """scikit-learn's 8x8 digits as three splits of a seed-0 permutation."""
    try:
        # Imported lazily: scikit-learn is an optional dependency.
        from sklearn import datasets as sklearn_datasets  # pylint: disable=C0415
    except ImportError as error:
        raise ValueError("Dataset 'digits' needs scikit-learn: "
                         "pip install scikit-learn") from error
    digits = sklearn_datasets.load_digits()
    # Values are counts 0..16; rescale to the uint8 range like the other data.
    images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], digits.target[order].astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    bounds = np.cumsum(list(_INFOS["digits"].splits.values()))[:-1]
    return dict(zip(SPLITS, zip(np.split(images, bounds), np.split(labels, bounds))))


def load_arrays(name, split, data_dir=None, download=True):
    """Loads one split of a named dataset as numpy arrays.

    Validation is the last 1/6 of the official MNIST / Fashion-MNIST training
    set (10,000 of 60,000) and the last 1/10 of CIFAR-10's (5,000 of 50,000);
    binarized MNIST has official validation files; digits uses a seed-0
    permutation of scikit-learn's 1797 images (1297 / 200 / 300). `data_dir`
    is not used for digits and image_patches, which ship with scikit-learn.

    Args:
      name: one of `DATASETS`.
      split: "train", "validation" or "test".
      data_dir: optional folder with the dataset files (or a parent holding a
        subfolder named like the dataset); used alone when given (no fallback).
      download: whether to download the files when no local copy is found.

    Returns:
      `(images, labels)`: read-only uint8 `[N, H, W, C]` (values 0..255, or 0/1
      for binarized MNIST; float32 points [N, 2] for the toy densities) and
      int64 `[N]` (-1 when the data has no labels).

    Raises:
      ValueError: for an unknown `name` or `split`, a missing `data_dir`, a
        corrupt file or a download with the wrong SHA-256.
      DataNotFoundError: if the files are nowhere and cannot be downloaded.
    """
    dataset_info = info(name)
    validation.one_of("split", split, SPLITS)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise ValueError(f"`data_dir` does not exist. Received: data_dir={data_dir!r}")
    if name == "digits":
        return _load_digits()[split]
    if name == "image_patches":
        return image_patches.load()[split]
    if name in toy_data.TOY_DATASETS:
        points = toy_data.sample(name, split)
        return points, np.full(len(points), -1, np.int64)
    file_format, paths = _locate(name, data_dir, download)
    splits = _parse(file_format, paths, tuple(_stamp(p) for p in paths))
    for images, _ in splits.values():
        if images.shape[1:] != dataset_info.image_shape:
            raise ValueError(f"{name} images have shape {images.shape[1:]}, "
                             f"expected {dataset_info.image_shape}.")
    if "validation" not in splits:
        images, labels = splits["train"]
        official = dataset_info.splits
        num_validation = round(len(images) * official["validation"]
                               / (official["train"] + official["validation"]))
        cut = len(images) - num_validation
        splits = dict(splits, train=(images[:cut], labels[:cut]),
                      validation=(images[cut:], labels[cut:]))
    sizes = {s: len(splits[s][0]) for s in SPLITS}
    if sizes != dataset_info.splits:
        logging.warning("%s has split sizes %s; the official ones are %s.",
                        name, sizes, dataset_info.splits)
    return splits[split]


def make_dataset(name, split, batch_size, *, data_dir=None, binarize="none",
                 seed=0, shuffle=None, drop_remainder=False, max_examples=None,
                 download=True, epoch=None, with_index=False):
    """Builds a deterministic batched `tf.data` pipeline of a named dataset.

    Args:
      name: one of `DATASETS`.
      split: "train", "validation" or "test".
      batch_size: positive int.
      data_dir: optional folder with the dataset files (see `load_arrays`).
      binarize: "none" (grey values), "dynamic" (a fresh Bernoulli(x) draw
        every epoch, reproducible under `seed`) or "static" (drawn once with
        `seed`, identical every epoch: use it for evaluation sets).
      seed: non-negative int seeding shuffling and binarization.
      shuffle: whether to shuffle (reshuffled each epoch, reproducibly);
        default True for "train", False otherwise.
      drop_remainder: whether to drop the last, smaller batch.
      max_examples: if given, keep only the first `max_examples` examples
        (before shuffling), e.g. for tiny test subsets.
      download: whether to download the files when no local copy is found.
      epoch: None, or the epoch (>= 0) whose order and dynamic binarization
        the dataset holds: a function of (seed, epoch) alone, the same on
        every iteration and in every process (what a resumed run needs).
      with_index: add "index", each example's position in the split (after
        `max_examples`), for models with per-example state (variational EM's
        local parameters).

    Returns:
      A `tf.data.Dataset` of dicts `{"image": float32 [B, H, W, C] in [0, 1],
      "label": int64 [B]}` (and "index": int64 [B]); without `epoch`, iterating
      it again is a new epoch.

    Raises:
      ValueError: for an invalid argument or missing data (see `load_arrays`).
    """
    validation.one_of("binarize", binarize, BINARIZE)
    validation.at_least("batch_size", batch_size, 1)
    validation.at_least("max_examples", max_examples, 1, allow_none=True)
    validation.at_least("seed", seed, 0)
    validation.at_least("epoch", epoch, 0, allow_none=True)
    if shuffle is not None and not isinstance(shuffle, bool):
        raise ValueError("`shuffle` must be None or a bool. "
                         f"Received: shuffle={shuffle!r}")
    num_bits = info(name).num_bits
    if not num_bits and binarize != "none":
        raise ValueError(f"{name} is continuous data: use binarize='none'. "
                         f"Received: binarize={binarize!r}")
    # Continuous data (num_bits 0) are used as they are.
    max_value = 2 ** num_bits - 1 if num_bits else 1
    images, labels = load_arrays(name, split, data_dir=data_dir, download=download)
    images, labels = images[:max_examples], labels[:max_examples]
    if binarize == "static":
        images, max_value = binarize_once(images, max_value, seed), 1

    # The arrays live in memory as uint8 (4x smaller than float32), so the
    # pipeline needs no `.cache()`; conversion happens per batch.
    columns = {"image": images, "label": labels}
    if with_index:
        columns["index"] = np.arange(len(images), dtype=np.int64)
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle is None:
        shuffle = split == "train"
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=streams.derive(seed, "shuffle", epoch),
                                  reshuffle_each_iteration=epoch is None)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(batch, draw_seed=None):
        image = tf.cast(batch["image"], tf.float32) / max_value
        if draw_seed is not None:  # Dynamic binarization: x ~ Bernoulli(image).
            noise = tf.random.stateless_uniform(tf.shape(image), seed=draw_seed)
            image = tf.cast(noise < image, tf.float32)
        return {**batch, "image": image}

    if binarize == "dynamic":
        # One stateless seed pair per batch, new pairs every epoch, the same
        # ones for the same `seed` (a stream of its own: `tfvae.streams`).
        draw_seeds = streams.seed_pairs(seed, "binarize", epoch)
        dataset = tf.data.Dataset.zip(dataset, draw_seeds)
    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def binarize_once(images, max_value, seed):
    """Draws x ~ Bernoulli(images / max_value) once; returns uint8 0/1 images."""
    rng = np.random.default_rng(seed)
    binary = np.empty(images.shape, np.uint8)
    # Chunks bound the float32 noise memory (CIFAR's train set is 138M pixels).
    for start in range(0, len(images), 4096):
        chunk = images[start:start + 4096]
        binary[start:start + 4096] = (
            rng.random(chunk.shape, dtype=np.float32) * max_value < chunk)
    return binary


def validate_images(images, *, name="images", image_shape=None,
                    value_range=(0.0, 1.0)):
    """Checks user-supplied images and returns them as float32 numpy.

    Args:
      images: array-like `[N, H, W, C]`.
      name: the argument's name, used in error messages.
      image_shape: optional expected `(H, W, C)`.
      value_range: `(low, high)` bounds every value must lie within.

    Returns:
      float32 numpy array `[N, H, W, C]`.

    Raises:
      ValueError: for a rank other than 4, a shape other than `image_shape`,
        NaN or inf values, or values outside `value_range`.
    """
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(f"`{name}` must have rank 4 [num_images, height, width, "
                         f"channels]. Received: shape={array.shape}")
    if image_shape is not None and array.shape[1:] != tuple(image_shape):
        raise ValueError(f"`{name}` must have image shape {tuple(image_shape)} "
                         f"(expected [N, {', '.join(map(str, image_shape))}]). "
                         f"Received: shape={array.shape}")
    num_bad = array.size - np.count_nonzero(np.isfinite(array))
    if num_bad:
        raise ValueError(f"`{name}` contains {num_bad} non-finite values "
                         "(NaN or inf).")
    low, high = value_range
    if array.size and (array.min() < low or array.max() > high):
        raise ValueError(f"`{name}` values must lie in [{low:g}, {high:g}]. "
                         f"Received: min={array.min():g}, max={array.max():g}")
    return array
