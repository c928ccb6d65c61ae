"""Executes colab/01_vae.ipynb end to end (tiny mode) and checks its numbers.

The kernel is a temporary kernelspec that runs this interpreter
(`sys.executable`), so the notebook sees the same environment as the tests,
whatever `python3` kernels are installed elsewhere.
"""

import json
import math
import os
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "colab" / "01_vae.ipynb"
KERNEL_NAME = "tfvae-test-python"
# Local copies the library finds without a download (see tfvae/data.py).
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",
                      os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                                   "datasets", "fashion-mnist"))
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# A one-sample ELBO estimate over 100 images can exceed the IS estimate by noise
# only; a real violation (a broken estimator) is far larger than this.
TOLERANCE_NATS = 1.0


def _has_fashion_mnist():
    return any(all(os.path.isfile(os.path.join(d, s)) or os.path.isfile(os.path.join(d, s + ".gz"))
                   for s in IDX_STEMS) for d in FASHION_MNIST_DIRS)


def _write_kernelspec(jupyter_dir):
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "tfvae test kernel", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def _stdout(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def test_notebook_is_saved_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:60]


def test_notebook_runs_tiny(tmp_path, monkeypatch):
    if not _has_fashion_mnist():
        pytest.skip(f"Fashion-MNIST not found locally in {' or '.join(FASHION_MNIST_DIRS)} "
                    "(apt-get install dataset-fashion-mnist); the notebook never downloads "
                    "outside Colab.")
    _write_kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TFVAE_COLAB_TINY", "1")
    monkeypatch.setenv("TFVAE_COLAB_WORKDIR", str(tmp_path / "workdir"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Runs from colab/, as when a researcher opens the notebook from the checkout.
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=600,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # Raises CellExecutionError if any cell fails.

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code_cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source[:60]
    assert (tmp_path / "workdir" / "model.keras").is_file()
    metrics = json.loads((tmp_path / "workdir" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["dataset"] == "fashion_mnist" and metrics["epochs_done"] == 1

    last_line = _stdout(code_cells[-1]).strip().splitlines()[-1]
    result = json.loads(last_line)
    assert result["tiny"] is True
    assert result["num_importance_samples"] == 100 and result["n"] == 100
    elbo, log_likelihood = result["elbo"], result["log_likelihood"]
    assert math.isfinite(elbo) and math.isfinite(log_likelihood)
    # Binary 28x28 images: log p(x) < 0 and above the uniform model's 784 log(1/2).
    assert -784 * math.log(2.0) < elbo < 0
    # The IS estimate with K > 1 is, on average, at least as tight as the ELBO (§2.6).
    assert log_likelihood >= elbo - TOLERANCE_NATS
    assert result["gap"] == pytest.approx(log_likelihood - elbo)
