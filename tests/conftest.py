"""Shared pytest setup: quiet TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def needs_fashion_mnist():
    """Skips the calling test when Debian's Fashion-MNIST is not installed."""
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} "
                    "(apt-get install dataset-fashion-mnist)")
