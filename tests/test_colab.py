"""Executes the colab/ notebooks end to end (tiny mode) and checks their numbers.

Each notebook prints one JSON line last; a per-notebook check function
(`NOTEBOOK_CHECKS`) asserts on it.

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
COLAB = REPO / "colab"
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
# The mean of log p_model(x) - log p_data(x) over test points x ~ p_data estimates
# -KL(p_data || p_model) <= 0: no normalized model beats the true density in expectation.
# Over 10,000 held-out points (never trained on) the standard error of that mean is ~0.01
# nats for the flows of the tiny run, so a flow "beating" the truth by more than this is a
# bug (e.g. an unnormalized density or a wrong log-determinant), not noise.
FLOW_TOLERANCE_NATS = 0.05
# Training must move the flow away from its initialization: 31 Adam steps of the tiny run
# raise the MAF's test log-likelihood by ~0.45 nats over the same seeded untrained flow
# (about -3.9 nats, near N(0, I)'s -3.88 on this data).
MIN_FLOW_IMPROVEMENT_NATS = 0.1


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


def _check_01_vae(result, workdir):
    assert (workdir / "model.keras").is_file()
    metrics = json.loads((workdir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["dataset"] == "fashion_mnist" and metrics["epochs_done"] == 1

    assert result["tiny"] is True
    assert result["num_importance_samples"] == 100 and result["n"] == 100
    elbo, log_likelihood = result["elbo"], result["log_likelihood"]
    assert math.isfinite(elbo) and math.isfinite(log_likelihood)
    # Binary 28x28 images: log p(x) < 0 and above the uniform model's 784 log(1/2).
    assert -784 * math.log(2.0) < elbo < 0
    # The IS estimate with K > 1 is, on average, at least as tight as the ELBO (§2.6).
    assert log_likelihood >= elbo - TOLERANCE_NATS
    assert result["gap"] == pytest.approx(log_likelihood - elbo)


def _check_02_flows(result, workdir):
    for name in ("maf", "realnvp", "vae", "vae_iaf"):
        assert (workdir / name / "model.keras").is_file(), name
    assert result["tiny"] is True
    assert result["K"] == 100 and result["n"] == 100 and result["n_flow_test"] == 10000
    numbers = {k: v for k, v in result.items() if k not in ("tiny",)}
    assert all(math.isfinite(v) for v in numbers.values()), numbers
    # No model beats the true density by more than Monte-Carlo error (see FLOW_TOLERANCE_NATS).
    for key in ("flow_test_ll", "realnvp_test_ll"):
        assert result[key] <= result["true_test_ll"] + FLOW_TOLERANCE_NATS, (key, result)
    assert result["flow_test_ll"] > result["flow_untrained_ll"] + MIN_FLOW_IMPROVEMENT_NATS
    # The IS estimate with K > 1 is, on average, at least as tight as the ELBO (§2.6).
    for prefix in ("vae", "iaf"):
        elbo, log_likelihood = result[f"{prefix}_elbo"], result[f"{prefix}_ll"]
        assert -784 * math.log(2.0) < elbo < 0, prefix
        assert log_likelihood >= elbo - TOLERANCE_NATS, prefix


NOTEBOOK_CHECKS = {"01_vae.ipynb": _check_01_vae, "02_flows.ipynb": _check_02_flows}


def test_every_notebook_is_checked():
    assert sorted(p.name for p in COLAB.glob("*.ipynb")) == sorted(NOTEBOOK_CHECKS)


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CHECKS))
def test_notebook_is_saved_without_outputs(notebook):
    nb = nbformat.read(COLAB / notebook, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CHECKS))
def test_notebook_runs_tiny(notebook, tmp_path, monkeypatch):
    if not _has_fashion_mnist():
        pytest.skip(f"Fashion-MNIST not found locally in {' or '.join(FASHION_MNIST_DIRS)} "
                    "(apt-get install dataset-fashion-mnist); the notebooks never download "
                    "outside Colab.")
    _write_kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TFVAE_COLAB_TINY", "1")
    monkeypatch.setenv("TFVAE_COLAB_WORKDIR", str(tmp_path / "workdir"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")

    nb = nbformat.read(COLAB / notebook, as_version=4)
    # Runs from colab/, as when a researcher opens the notebook from the checkout.
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=600,
                                     resources={"metadata": {"path": str(COLAB)}})
    client.execute()  # Raises CellExecutionError if any cell fails.

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code_cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source[:60]
    last_line = _stdout(code_cells[-1]).strip().splitlines()[-1]
    NOTEBOOK_CHECKS[notebook](json.loads(last_line), tmp_path / "workdir")
