"""The standard files of the image datasets: parsers and verified downloads.

Readers for LeCun's IDX files (MNIST, Fashion-MNIST), Larochelle's `.amat`
files (binarized MNIST) and the pickled CIFAR-10 batches, each checking the
file's structure and raising ValueError naming a corrupt file; and a
download that checks every file's SHA-256 before it is used.
"""

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.request

from absl import logging
import numpy as np

CIFAR_TAR, CIFAR_DIR = "cifar-10-python.tar.gz", "cifar-10-batches-py"
CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def read_bytes(path):
    """Reads a file, gunzipping `*.gz`; unreadable files raise ValueError."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"Cannot read data file {path}: {error}") from error


def read_idx(path):
    """Parses an IDX file (LeCun's MNIST format) into a uint8 array."""
    data = read_bytes(path)
    # Header: big-endian magic 0x0000080D (D = rank), then D uint32 sizes.
    magic = int.from_bytes(data[:4], "big")
    if len(data) < 4 or magic not in (2049, 2051):
        raise ValueError(f"Corrupt IDX file {path}: magic number {magic}, "
                         "expected 2049 (labels) or 2051 (images).")
    header_size = 4 + 4 * (magic & 0xFF)
    if len(data) < header_size:
        raise ValueError(f"Corrupt IDX file {path}: truncated header.")
    dims = tuple(int(d) for d in np.frombuffer(data[4:header_size], ">u4"))
    expected_size = header_size + int(np.prod(dims))
    if len(data) != expected_size:
        raise ValueError(f"Corrupt IDX file {path}: header gives shape {dims} "
                         f"({expected_size} bytes) but the file holds "
                         f"{len(data)} bytes.")
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


def read_idx_pair(images_path, labels_path):
    """Reads matching IDX image and label files: uint8 [N,28,28,1], [N]."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"IDX files {images_path} and {labels_path} do not match: "
                         f"images {images.shape}, labels {labels.shape}.")
    return images[..., None], labels


def read_amat(path):
    """Parses a Larochelle `.amat` file: one image of 784 0/1 values a line."""
    data = read_bytes(path)
    raw = np.frombuffer(data, np.uint8)
    values = raw[~np.isin(raw, np.frombuffer(b" \t\r\n", np.uint8))]
    num_rows = sum(1 for line in data.splitlines() if line.strip())
    if (np.any((values != ord("0")) & (values != ord("1")))
        or values.size != num_rows * 784):
        raise ValueError(f"Corrupt .amat file {path}: expected {num_rows} lines of "
                         f"784 values in {{0, 1}}, found {values.size} values.")
    images = (values - ord("0")).reshape(num_rows, 28, 28, 1)
    return images, np.full(num_rows, -1, np.int64)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of lists, bytes and numpy arrays) only.

    Refuses every other class, so a planted file cannot run code on load.
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}.")
        return super().find_class(module, name)


def _cifar_batch(data, origin):
    """Parses one pickled CIFAR batch into (uint8 [N,32,32,3], labels [N])."""
    try:
        batch = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
        images = np.asarray(batch[b"data"], np.uint8)
        labels = np.asarray(batch[b"labels"], np.int64)
        # Rows are channel-first planes: [N, 3072] -> [N, C, H, W] -> [N, H, W, C].
        images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError,
            ValueError) as error:
        raise ValueError(f"Corrupt CIFAR batch {origin}: {error!r}") from error
    if len(images) != len(labels):
        raise ValueError(f"Corrupt CIFAR batch {origin}: {len(images)} images, "
                         f"{len(labels)} labels.")
    return images, labels


def read_cifar(path, is_tar):
    """Reads the CIFAR-10 batches from the archive or the extracted folder."""
    if is_tar:
        try:
            with tarfile.open(path, "r:gz") as tar:
                blobs = [tar.extractfile(f"{CIFAR_DIR}/{b}").read()
                         for b in CIFAR_BATCHES]
        except (tarfile.TarError, OSError, EOFError, KeyError) as error:
            raise ValueError(f"Cannot read CIFAR archive {path}: {error!r}") from error
    else:
        blobs = [read_bytes(os.path.join(path, b)) for b in CIFAR_BATCHES]
    batches = [_cifar_batch(blob, f"{path}:{b}")
               for blob, b in zip(blobs, CIFAR_BATCHES)]
    train = tuple(np.concatenate(parts) for parts in zip(*batches[:5]))
    return {"train": train, "test": batches[5]}



def fetch(url, path, timeout):
    """Downloads `url` to `path` (the only network access of tfvae)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        with open(path, "wb") as f:
            shutil.copyfileobj(response, f)


def sha256(path):
    """Hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_verified(files, directory, timeout):
    """Downloads the missing `files` into `directory`, checking each SHA-256.

    Args:
      files: ((file name, URL, expected SHA-256), ...).
      directory: destination folder (created).
      timeout: seconds per connection attempt.

    Raises:
      OSError: the download failed (no network, timeout, HTTP error).
      ValueError: a downloaded file has the wrong SHA-256 (it is deleted).
    """
    os.makedirs(directory, exist_ok=True)
    for filename, url, expected in files:
        path = os.path.join(directory, filename)
        if os.path.isfile(path):
            continue
        partial = path + ".part"
        logging.info("Downloading %s to %s.", url, path)
        try:
            fetch(url, partial, timeout)
            got = sha256(partial)
        except BaseException:  # Interrupted or failed: leave no partial file.
            if os.path.exists(partial):
                os.remove(partial)
            raise
        if got != expected:
            os.remove(partial)
            raise ValueError(f"SHA-256 mismatch for {url}: expected {expected}, got "
                             f"{got}. The corrupt download was deleted; try again.")
        os.replace(partial, path)
