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


# pytest.ini runs the suite on every core (pytest-xdist, `-n auto --dist loadgroup`).
# Tests that share a fixture of their module with module scope (a trained model, a
# server) run in one worker, so that it is built once (once per parameter for a
# parameterized one); every other test goes to whichever worker is free. A shared
# fixture cheap enough to build in every worker is listed here.
BUILT_PER_WORKER = frozenset({"tf_only"})


def _shared_fixtures(item):
    """[(name, param or None)] of the module-scoped fixtures of item's own module it uses."""
    info = getattr(item, "_fixtureinfo", None)
    params = getattr(getattr(item, "callspec", None), "params", {})
    shared = []
    for name, definitions in sorted(info.name2fixturedefs.items() if info else ()):
        definition = definitions[-1]
        if (definition.scope == "module" and name not in BUILT_PER_WORKER
                and item.nodeid.startswith(definition.baseid + "::")):
            shared.append((name, params.get(name)))
    return shared


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        shared = _shared_fixtures(item)
        if shared and not item.get_closest_marker("xdist_group"):
            module = item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(":".join(
                [module] + [f"{name}={param}" for name, param in shared if param is not None])))
