"""Gradient-estimator diagnostics on the linear-Gaussian model (tests/linear_gaussian.py).

The reparameterization, score-function and baselined score-function
estimators of the encoder's ELBO gradient must have the same mean (all are
unbiased): 2000 draws each put the score function's standard error below
10 % of the gradient's norm, so a bias of that size would fail the z-test.
Their variances must be ordered as the book says (§2.4 vs §2.9.1).
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests import linear_gaussian as lg
from tfvae.evaluation import gradient_variance as diagnostics

NUM_DRAWS = 2000


@pytest.fixture(scope="module")
def statistics():
    weight, bias, x = lg.problem(seed=3)
    a, c, scale_tril = lg.exact_posterior(weight, bias)
    model = lg.build(weight, bias, 0.5 * a, c - 0.4, 1.7 * scale_tril, analytic_kl=False)
    x = tf.constant(x.reshape(-1, lg.X_DIM, 1, 1), tf.float32)
    return diagnostics.gradient_statistics(model, x, num_draws=NUM_DRAWS, seed=0)


def test_estimators_are_unbiased(statistics):
    reference = statistics["reparameterization"]
    norm = np.linalg.norm(reference["mean"])
    assert len(reference["mean"]) == 60          # encoder Dense (5x5 + 5), head (5x5 + 5)
    for name in ("score_function", "score_function_baseline"):
        other = statistics[name]
        assert np.linalg.norm(other["stderr"]) < 0.1 * norm, name      # decisive
        z = (other["mean"] - reference["mean"]) / np.hypot(other["stderr"], reference["stderr"])
        # 60 parameters: |z| > 4.5 has probability < 1e-3 for unbiased estimators.
        assert np.abs(z).max() < 4.5, (name, z)


def test_reparameterization_has_the_lowest_variance(statistics):
    summary = diagnostics.summarize(statistics)["estimators"]
    assert summary["reparameterization"]["variance_ratio"] == 1.0
    assert summary["score_function"]["variance_ratio"] > 10
    # The control variate helps, but does not close the gap.
    assert 1 < summary["score_function_baseline"]["variance_ratio"] < (
        summary["score_function"]["variance_ratio"])


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="num_draws=1"):
        diagnostics.gradient_statistics(None, None, num_draws=1)
    with pytest.raises(ValueError, match="'pathwise'"):
        diagnostics.gradient_statistics(None, None, estimators=("pathwise",))


def test_measure_on_a_workdir(tmp_path):
    """`zoo.gradients` on a workdir holding config.json and model.keras (untrained weights)."""
    from tests.conftest import needs_fashion_mnist
    from tfvae.data import datasets as data_lib
    from tfvae.training import train
    from zoo import gradients
    import zoo

    needs_fashion_mnist()
    entry = zoo.load("vae")
    config = entry.Config(dataset="fashion_mnist", latent_size=4, hidden_units=(32, 32))
    model = entry.build_model(config, data_lib.info("fashion_mnist"))
    model(np.zeros((1, 28, 28, 1), np.float32))
    model.save(tmp_path / "model.keras")
    train.write_json_atomic(str(tmp_path / "config.json"), config.to_json())
    result = gradients.measure(str(tmp_path), batch_size=16, num_draws=20)
    assert result["batch_size"] == 16 and result["num_draws"] == 20
    assert result["num_parameters"] == 784 * 32 + 32 + 32 * 32 + 32 + 32 * 8 + 8
    ratios = {k: v["variance_ratio"] for k, v in result["estimators"].items()}
    assert ratios["score_function"] > ratios["reparameterization"] == 1.0, ratios
    lines = gradients.table(result).splitlines()
    assert lines[0].split()[0] == "estimator" and len(lines) == 4
    json.dumps(result)                         # the command prints it as one JSON line
    with pytest.raises(ValueError, match="config.json and model.keras"):
        gradients.measure(str(tmp_path / "missing"))
