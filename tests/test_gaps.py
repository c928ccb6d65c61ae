"""The inference gaps (book §2.7) against closed forms, and `python -m zoo.gaps` as a user runs it.

On the linear-Gaussian oracle the posterior is N(mu(x), Lambda^-1) with
Lambda = (W^T W + sigma^2 I) / sigma^2. The best factorized Gaussian under
KL(q || p) has the posterior mean and precisions diag(Lambda), so the
approximation gap of the diagonal family is exactly
0.5 (sum_i log Lambda_ii - log det Lambda) for every x, and zero for the
full-covariance family; the amortization gap of an encoder that outputs
N(0, I) is ELBO(q*) - ELBO(N(0, I)), both in closed form (`expected_elbo`).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import linear_gaussian as lg
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.evaluation import gaps
from tfvae.evaluation import local_posterior

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = dict(elbo_samples=2000, is_samples=2000, ais_chains=64, ais_steps=1000,
                local_steps=500, local_learning_rate=0.05)


def _precision(weight):
    return (weight.T @ weight + lg.SIGMA ** 2 * np.eye(lg.Z_DIM)) / lg.SIGMA ** 2


def _diagonal_oracle():
    """The oracle with a factorized posterior whose encoder gives the right mean
    and twice the best standard deviations, 1 / sqrt(Lambda_ii)."""
    weight, bias, x = lg.problem(0)
    a, c, _ = lg.exact_posterior(weight, bias)
    kernel = np.zeros((lg.X_DIM, 2 * lg.Z_DIM))
    kernel[:, :lg.Z_DIM] = a.T
    head_bias = np.concatenate([c, np.log(2.0 / np.sqrt(np.diag(_precision(weight))))])
    model = lg.build_model(weight, bias, latents.LatentLayer(families.DiagonalGaussian(lg.Z_DIM)),
                           kernel, head_bias, analytic_kl=True)
    return model, weight, bias, x


def test_diagonal_family_gaps_match_the_closed_form():
    model, weight, bias, x = _diagonal_oracle()
    # 20000 draws for the ELBOs: the amortized q's (twice too wide) are noisy.
    result = gaps.inference_gaps(model, x.reshape(8, lg.X_DIM, 1, 1).astype("float32"),
                                 seed=(1, 2), **{**SETTINGS, "elbo_samples": 20000})
    precision = _precision(weight)
    approximation = 0.5 * (np.log(np.diag(precision)).sum() - np.linalg.slogdet(precision)[1])
    exact = lg.exact_log_prob(weight, bias, x)
    loc = model.posterior_params(x.reshape(8, lg.X_DIM, 1, 1).astype("float32")).numpy()
    amortized = np.array([lg.expected_elbo(weight, bias, x[i:i + 1], loc[i:i + 1, :lg.Z_DIM],
                                           np.diag(np.exp(loc[i, lg.Z_DIM:])))[0]
                          for i in range(8)])
    amortization = exact - approximation - amortized           # 1.61 nats here
    # Measured: AIS within 0.012 of the exact log p(x), q* within 0.03 of the best
    # ELBO; the approximation gap is 0.279 nats per example.
    np.testing.assert_allclose(result["log_prob_ais"], exact, atol=0.03)
    np.testing.assert_allclose(result["local_elbo"], exact - approximation, atol=0.04)
    np.testing.assert_allclose(result["approximation_gap"], approximation, atol=0.05)
    np.testing.assert_allclose(result["amortization_gap"], amortization, atol=0.1)
    np.testing.assert_allclose(result["approximation_gap"] + result["amortization_gap"],
                               result["log_prob_ais"] - result["amortized_elbo"], atol=1e-9)


def test_exact_posterior_family_has_no_gap():
    weight, bias, x = lg.problem(0)
    a, c, scale_tril = lg.exact_posterior(weight, bias)
    model = lg.build(weight, bias, a, c, scale_tril, analytic_kl=True)
    result = gaps.inference_gaps(model, x.reshape(8, lg.X_DIM, 1, 1).astype("float32"),
                                 seed=(3, 4), **SETTINGS)
    assert np.abs(result["approximation_gap"]).max() < 0.03
    assert np.abs(result["amortization_gap"]).max() < 0.03


def test_active_units_count_dimensions_whose_posterior_mean_varies():
    rng = np.random.default_rng(0)
    means = np.stack([rng.normal(size=500), 0.01 * rng.normal(size=500),
                      0.5 * rng.normal(size=500)], axis=1)
    variance, active = gaps.active_units(means)
    assert active == 2
    np.testing.assert_allclose(variance, [1.0, 1e-4, 0.25], rtol=0.15)
    with pytest.raises(ValueError, match="must be"):
        gaps.active_units(means[:1])


def test_local_posterior_refuses_a_model_without_posterior_parameters():
    from zoo import maf
    from tfvae.data import datasets

    config = maf.Config()
    with pytest.raises(ValueError, match="AIS does not apply to FlowDensity"):
        local_posterior.check_supported(maf.build_model(config, datasets.info(config.dataset)))


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_the_gaps_tool_and_the_ais_evaluation_on_a_trained_workdir(tmp_path):
    workdir = str(tmp_path / "vae")
    run = _cli("zoo.vae", f"--workdir={workdir}", "--dataset=digits", "--epochs=3",
               "--hidden_units=32", "--latent_size=4", "--export=false",
               "--image_summaries=false")
    assert run.returncode == 0, run.stderr[-3000:]
    refused = _cli("zoo.gaps", f"--workdir={workdir}", "--ais_steps=0")
    assert refused.returncode != 0
    assert "`ais_steps` must be an integer >= 1. Received: ais_steps=0" in refused.stderr
    assert not os.path.exists(os.path.join(workdir, "gaps.json"))
    run = _cli("zoo.gaps", f"--workdir={workdir}", "--num_examples=30", "--batch_size=20",
               "--ais_steps=100", "--is_samples=500", "--elbo_samples=500",
               "--local_steps=100")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "approximation_gap" in run.stdout and "active units" in run.stdout
    with open(os.path.join(workdir, "gaps.json"), encoding="utf-8") as f:
        report = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert report["n"] == 30 and report["settings"]["ais_steps"] == 100
    per = {k: np.array(v) for k, v in report["per_example"].items()}
    assert all(len(v) == 30 for v in per.values())
    np.testing.assert_allclose(per["approximation_gap"] + per["amortization_gap"],
                               per["log_prob_ais"] - per["amortized_elbo"], atol=1e-9)
    # q* starts at the encoder's posterior and climbs the ELBO; AIS and IS agree.
    assert report["amortization_gap"] > 0
    assert abs(report["log_prob_ais"] - report["log_prob_is"]) < 0.2
    assert 0 <= report["active_units"] <= report["latent_size"] == 4
    assert len(report["kl_per_dimension"]) == 4
    assert os.path.getsize(os.path.join(workdir, "gaps.png")) > 1000
    # zoo.evaluate --estimator=ais: the JSON names the estimator and its settings.
    refused = _cli("zoo.evaluate", f"--workdir={workdir}", "--estimator=ais", "--saved_model")
    assert refused.returncode != 0 and "Drop --saved_model" in refused.stderr
    results = {}
    for estimator in ("ais", "is"):
        run = _cli("zoo.evaluate", f"--workdir={workdir}", f"--estimator={estimator}",
                   "--ais_steps=100", "--num_samples=2000", "--max_examples=50",
                   "--batch_size=50")
        assert run.returncode == 0, run.stderr[-3000:]
        results[estimator] = json.loads(run.stdout.strip().splitlines()[-1])
    ais, importance = results["ais"], results["is"]
    assert ais["estimator"] == "ais" and ais["num_importance_samples"] is None
    assert (ais["ais_chains"], ais["ais_steps"], ais["ais_leapfrog_steps"]) == (16, 100, 10)
    assert importance["estimator"] == "is" and importance["num_importance_samples"] == 2000
    assert ais["log_likelihood"] > ais["elbo"]
    assert abs(ais["log_likelihood"] - importance["log_likelihood"]) < 0.1
