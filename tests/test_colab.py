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
# Local copies the library finds without a download (see tfvae/data/datasets.py).
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


def _own_estimates(workdir, num_samples):
    """The notebook's estimators recomputed from `model.keras`, not through tfvae's code.

    Loads the trained model, rebuilds the notebook's 100 test images (binarized
    once with the training loop's held-out seed) and computes, per image, the
    IS estimate log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) with z_k ~ q(z|x)
    drawn and scored by TFP, for each K in `num_samples` (16 independent
    draws for K <= 10, 4 above), and 16 single-sample ELBOs
    log p(x|z) - KL(q || p) (closed-form KL, as the model is configured).

    Returns:
      Dict: {K: [draws, n] IS estimates} and "elbo": [16, n].
    """
    import keras
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp

    import tfvae.data.datasets
    import tfvae.training.train
    import zoo.vae  # noqa: F401  (registers the model's classes)

    model = keras.saving.load_model(workdir / "model.keras")
    assert model.training_objective.analytic_kl
    batch = next(iter(tfvae.data.datasets.make_dataset(
        "fashion_mnist", "test", 100, binarize="static", seed=tfvae.training.train.EVAL_BINARIZE_SEED,
        max_examples=100, download=False)))
    x = tf.constant(batch["image"])
    q, p = model.encode(x), model.prior()
    out = {}
    for k in num_samples:
        out[k] = []
        for seed in range(16 if k <= 10 else 4):
            z = q.sample(k, seed=[seed, k])                                     # [K, n, d]
            log_w = model.decode(z).log_prob(x) + p.log_prob(z) - q.log_prob(z)  # [K, n]
            out[k].append((tf.reduce_logsumexp(log_w, 0) - np.log(k)).numpy())
    kl = tfp.distributions.kl_divergence(q, p)
    out["elbo"] = [(model.decode(q.sample(seed=[seed, 0])).log_prob(x) - kl).numpy()
                   for seed in range(16)]
    return {key: np.asarray(value, np.float64) for key, value in out.items()}


def _agrees_within_noise(reported, own):
    """Whether a reported mean matches own estimates [seeds, n] within Monte-Carlo error.

    The own estimates use independent draws on the same images, so their
    spread across seeds per image gives the Monte-Carlo standard deviation s of
    one estimate of one image (image variation cancels); the reported mean of
    n images (one draw each) minus the own mean (S draws each) then has the
    standard error s sqrt((1 + 1/S) / n), and must lie within 4 of them.
    """
    import numpy as np

    num_seeds, n = own.shape
    spread = float(np.sqrt(np.mean(np.var(own, axis=0, ddof=1))))
    stderr = spread * math.sqrt((1 + 1 / num_seeds) / n)
    return abs(reported - own.mean()) <= 4 * stderr + 1e-3, (reported, own.mean(), stderr)


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
    assert result["gap"] == pytest.approx(log_likelihood - elbo)
    # The notebook's claims (§2.6). The sweep and the final estimate use the same 100 images
    # and seeds, so the sweep's K = 100 is the final estimate itself.
    sweep = {int(k): v for k, v in result["sweep"].items()}
    assert sorted(sweep) == [1, 10, 100]
    assert sweep[100] == pytest.approx(log_likelihood, abs=1e-6)
    # "IS estimate tightens with K": it increases with K (the tiny run: -492, -484, -480).
    assert sweep[1] < sweep[10] < sweep[100], sweep
    # "0 <= E[gap]": the K = 100 estimate is above the ELBO (the tiny run: by ~15 nats,
    # while the paired Monte-Carlo error of the gap is ~1 nat).
    assert result["gap"] > 2.0, result
    # An independent check: the same estimators written out here (TFP draws and densities
    # of the saved model) agree with the notebook's numbers within Monte-Carlo error. K = 1
    # is the single-sample ELBO with a Monte-Carlo KL; a missing -log K, a mean of log
    # weights instead of a log-mean-exp, or a K-dependent slip in the chunking fails here.
    own = _own_estimates(workdir, sorted(sweep))
    for k in sorted(sweep):
        ok, detail = _agrees_within_noise(sweep[k], own[k])
        assert ok, (k, detail)
    ok, detail = _agrees_within_noise(elbo, own["elbo"])
    assert ok, ("elbo", detail)
    # The own estimates have the same order: ELBO ~ IS(K=1) < IS(K=10) < IS(K=100).
    assert own["elbo"].mean() < own[10].mean() < own[100].mean()


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


def _check_04_variants(result, workdir):
    for name in ("beta_vae_1", "beta_vae_4", "cvae", "m2"):
        assert (workdir / name / "model.keras").is_file(), name
    assert result["tiny"] is True and result["m2_num_labels"] == 100
    numbers = [v for k, v in result.items() if isinstance(v, float)] + result["kl_dims_beta4"]
    assert all(math.isfinite(v) for v in numbers), result
    # β = 4 prices information in z higher: a lower rate, and a lower ELBO than the β = 1
    # model, which maximizes the ELBO itself.
    assert result["rate_beta4"] < result["rate_beta1"]
    assert result["elbo_beta4"] < result["elbo_beta1"]
    assert sum(result["kl_dims_beta4"]) == pytest.approx(result["rate_beta4"], rel=1e-4)
    # The most informative dimension moves the decoded image more than the least one (mean
    # |pixel change| over 32 test images; the tiny run trains 4 epochs: after 2, with ~1 nat
    # of rate in all, the untrained decoder's sensitivity to an unused dimension was as large).
    assert result["traversal_change_most"] > result["traversal_change_least"]
    # Both label models use the label far above chance (0.10); the tiny runs reach about
    # 0.5 (CVAE as a generative classifier) and 0.67 (M2's q(y|x), 100 labels).
    assert result["cvae_elbo_classifier_accuracy"] > 0.25
    assert result["m2_accuracy"] > 0.3


def _check_03_hierarchical(result, workdir):
    assert (workdir / "model.keras").is_file()
    assert result["tiny"] is True and result["K"] == 50 and result["n"] == 100
    elbo, log_likelihood = result["elbo"], result["log_likelihood"]
    assert -784 * math.log(2.0) < elbo < 0 and math.isfinite(log_likelihood)
    # IS over the joint of both layers: on average at least as tight as the ELBO (§2.6).
    assert log_likelihood >= elbo - TOLERANCE_NATS
    # One KL per layer per epoch, and the layers' KLs add up to the logged total rate.
    assert len(result["rate_0"]) == len(result["rate_1"]) == len(result["rate"]) == 2
    for r0, r1, total in zip(result["rate_0"], result["rate_1"], result["rate"]):
        assert r0 >= 0 and r1 >= 0
        assert r0 + r1 == pytest.approx(total, rel=1e-4)
    # Temperature scales every prior: samples at T = 0.1 vary far less than at T = 1.
    spread = dict(zip(result["temperatures"], result["sample_spread"]))
    assert spread[0.1] < 0.5 * spread[1.0]


def _check_05_appendix_gaps(result, workdir):
    assert result["tiny"] is True and result["n"] == 20
    for name in ("vae", "vae_iaf"):
        assert (workdir / name / "model.keras").is_file() and (workdir / name / "gaps.png").is_file()
        get = lambda key: result[f"{name}/{key}"]  # noqa: E731
        assert all(math.isfinite(v) for k, v in result.items() if k.startswith(name)), result
        assert -784 * math.log(2.0) < get("amortized_elbo") < 0
        # The decomposition the notebook plots: log p(x) - ELBO(q_phi) is the sum of the gaps.
        assert get("approximation_gap") + get("amortization_gap") == pytest.approx(
            get("log_prob_ais") - get("amortized_elbo"), abs=1e-6)
        # q* starts at the encoder's q and climbs its ELBO: after two epochs the encoder is far
        # from the per-image optimum (the tiny run: 4.6 +- 0.6 and 4.8 +- 0.7 nats).
        assert get("amortization_gap") > 0, result
        # AIS from q_phi is at least as tight as the ELBO of q_phi, and IS and AIS agree to
        # a few nats (the tiny run: AIS 2.4 nats above IS with K = 200, for both models).
        assert get("log_prob_ais") > get("amortized_elbo") - TOLERANCE_NATS, result
        assert abs(get("log_prob_ais") - get("log_prob_is")) < 5.0, result


NOTEBOOK_CHECKS = {"01_vae.ipynb": _check_01_vae, "02_flows.ipynb": _check_02_flows,
                   "03_hierarchical.ipynb": _check_03_hierarchical,
                   "04_variants.ipynb": _check_04_variants,
                   "05_appendix_gaps.ipynb": _check_05_appendix_gaps}


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
