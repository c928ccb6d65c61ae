"""The tested versions of tfvae's dependencies, checked when the package is imported.

`TESTED` holds the ranges of pyproject.toml's `dependencies` (the set the suite
runs on); `check` names every installed package outside its range, and
importing `tfvae` warns with that message (a `VersionWarning`) once, before
any TensorFlow import, so a user with another TensorFlow, TFP or Keras knows
why something breaks.
"""

import importlib.metadata
import re
import warnings

# name: (lowest tested version, first version not tested), as in pyproject.toml.
TESTED = {
    "tensorflow": ("2.21", "2.22"),
    "tensorflow-probability": ("0.25", "0.26"),
    "tf-keras": ("2.21", "2.22"),
    "keras": ("3.10", "4"),
    "tensorboard": ("2.21", "2.22"),
    "absl-py": ("2.0", "3"),
    "numpy": ("1.26", "3"),
}


class VersionWarning(UserWarning):
    """An installed dependency is outside the versions tfvae is tested with."""


def _release(version):
    """The leading release numbers of a version string: "2.21.0rc1" -> (2, 21, 0)."""
    match = re.match(r"\d+(\.\d+)*", version)
    if not match:
        return ()
    return tuple(int(part) for part in match.group(0).split("."))


def _installed(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check(installed=None):
    """Messages for the dependencies outside `TESTED`, [] when all are inside.

    Args:
      installed: {name: version string or None (missing)}; None reads the
        installed distributions.

    Returns:
      A list of strings, one per package outside its range or missing.
    """
    if installed is None:
        installed = {name: _installed(name) for name in TESTED}
    problems = []
    for name, (low, high) in TESTED.items():
        version = installed.get(name)
        if version is None:
            problems.append(f"{name} is not installed (tested: >={low},<{high})")
        elif not _release(low) <= _release(version) < _release(high):
            problems.append(f"{name} {version} is outside the tested range >={low},<{high}")
    return problems


def warn_if_untested():
    """Warns (`VersionWarning`) naming every dependency outside the tested set."""
    problems = check()
    if problems:
        warnings.warn("tfvae is tested with other versions: " + "; ".join(problems)
                      + ". Install the tested set with `pip install tfvae` (or `pip install "
                      "-e .` in a checkout) in a fresh virtual environment.", VersionWarning,
                      stacklevel=3)
