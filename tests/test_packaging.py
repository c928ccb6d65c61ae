"""Packaging (Ecosystem issue): pyproject.toml's metadata, the tested-versions check at import.

The dependency ranges in pyproject.toml are the tested set, written a second
time in `tfvae.versions.TESTED` for the check at import; these tests keep the
two equal, check that the installed distribution's metadata is pyproject's
(an editable install of this checkout), and that a user with an untested
Keras sees a warning naming it when importing tfvae, in a fresh process.
"""

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib

import pytest

from tfvae import versions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _ranges(requirements):
    """{name: (low, high)} of "name>=low,<high" requirement strings (in any order)."""
    ranges = {}
    for requirement in requirements:
        if ";" in requirement:                  # an extra's requirement
            continue
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        low = re.search(r">=([0-9.]+)", requirement)
        high = re.search(r"<([0-9.]+)", requirement)
        ranges[name] = (low and low.group(1), high and high.group(1))
    return ranges


def test_the_tested_ranges_are_pyprojects_dependencies():
    assert _ranges(_pyproject()["project"]["dependencies"]) == versions.TESTED
    # Every dependency has an upper bound (Keras 4 would be a new API).
    assert all(high for _, high in versions.TESTED.values())


def test_the_installed_metadata_is_pyprojects():
    project = _pyproject()["project"]
    assert _ranges(importlib.metadata.requires("tfvae")) == versions.TESTED
    metadata = importlib.metadata.metadata("tfvae")
    assert metadata["Version"] == __import__("tfvae").__version__
    assert f"Repository, {project['urls']['Repository']}" in metadata.get_all("Project-URL")


@pytest.mark.parametrize("installed, expected", [
    ({}, []),
    ({"keras": "4.0.0"}, ["keras 4.0.0 is outside the tested range >=3.10,<4"]),
    ({"keras": "3.9.2"}, ["keras 3.9.2 is outside the tested range >=3.10,<4"]),
    ({"tensorflow": "2.21.0rc1"}, []),
    ({"tensorflow": "2.22.0"}, ["tensorflow 2.22.0 is outside the tested range >=2.21,<2.22"]),
    ({"tensorflow-probability": None},
     ["tensorflow-probability is not installed (tested: >=0.25,<0.26)"]),
])
def test_check_names_each_package_outside_its_range(installed, expected):
    inside = {name: low + ".0" for name, (low, _) in versions.TESTED.items()}
    assert versions.check({**inside, **installed}) == expected


def _import_tfvae(prelude=""):
    code = (f"{prelude}\nimport warnings\nwarnings.simplefilter('default')\n"
            "import tfvae\n")
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_importing_tfvae_warns_about_an_untested_keras_and_not_about_the_tested_set():
    run = _import_tfvae()
    assert run.returncode == 0, run.stderr[-2000:]
    assert "VersionWarning" not in run.stderr
    # The same import where importlib.metadata reports Keras 4.1.0.
    run = _import_tfvae("import importlib.metadata as m\nreal = m.version\n"
                        "m.version = lambda name: '4.1.0' if name == 'keras' else real(name)")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "VersionWarning: tfvae is tested with other versions: keras 4.1.0 is outside the " \
           "tested range >=3.10,<4" in run.stderr
