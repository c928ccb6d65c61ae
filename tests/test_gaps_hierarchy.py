"""The local posterior, AIS and the inference gaps of a hierarchical VAE against the quadrature.

Appendix issue (book §2.7, §4.1): `HierarchicalVAE.posterior_params` are the
stack's `posterior_features` (what q(z_1..L|x) reads of x), and
`posterior_from_params` of them is the encoder's own posterior; moving them per
example (`local_posterior.optimize`) stays in the stack's posterior family. On
the tiny stacks of `test_oracle_hierarchy` (random weights, at most three
latent dimensions) the exact log p(x) is a grid quadrature, so AIS and the
gaps are checked against the true marginal, not only against each other.
"""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import test_oracle_hierarchy as oracle
from tfvae.evaluation import ais
from tfvae.evaluation import gaps
from tests import test_gaps


@pytest.mark.parametrize("case", oracle.CASES)
def test_the_encoders_parameters_give_the_encoders_posterior(case):
    """posterior_from_params(posterior_params(x)) draws the z and log q of the stack's own
    posterior pass over x (same seed, x tiled as the pass sees S copies)."""
    model = oracle._model(*oracle.CASES[case])
    x, samples, seed = tf.constant(oracle.X), 5, tf.constant([3, 9])
    params = model.posterior_params(x)
    assert params.shape == (len(oracle.X), sum(
        math.prod(s) for s in model.stack.feature_shapes))
    z, log_q = model.posterior_from_params(params).experimental_sample_and_log_prob(samples,
                                                                                   seed)
    outputs, _ = model.stack.infer(tf.tile(x, [samples, 1, 1, 1]), seed, analytic=False)
    rows = samples * len(oracle.X)
    expected_z = tf.concat([tf.reshape(o.z, [rows, -1]) for o in outputs], -1)
    expected_log_q = tf.add_n([o.kl + o.p.log_prob(o.z) for o in outputs])
    np.testing.assert_allclose(z.numpy().reshape(rows, -1), expected_z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_q.numpy().reshape(-1), expected_log_q, rtol=1e-5, atol=1e-5)
    # Other parameters are another member of the family: the draws move with them.
    moved, _ = model.posterior_from_params(params + 0.5).experimental_sample_and_log_prob(
        samples, seed)
    assert np.abs(moved.numpy() - z.numpy()).max() > 0.05


@pytest.mark.parametrize("case", ["mlp_bottom_up", "mlp_bidirectional_iaf",
                                  "resnet_bidirectional_iaf"])
def test_ais_on_a_hierarchy_converges_to_the_quadrature(case):
    """AIS over the joint of all layers -> the exact log p(x); a single step (importance
    sampling from the moment-matched start) is further from it."""
    model = oracle._model(*oracle.CASES[case])
    exact, _ = oracle._quadrature(model.stack, oracle.X)
    results = {steps: ais.ais_log_prob(model, oracle.X, num_chains=32, num_steps=steps,
                                       seed=(5, steps)) for steps in (1, 300)}
    errors = {steps: r.log_prob.numpy() - exact for steps, r in results.items()}
    # The standard error of the log of a mean over C chains: std(log w) / sqrt(C) (the
    # delta method; log w's spread is small at T = 300: measured 0.1-0.4 nats).
    stderr = results[300].log_weights.numpy().std(0) / math.sqrt(32)
    print(f"{case}: exact {exact}\n  AIS error T=1 {errors[1]}\n  T=300 {errors[300]} "
          f"(se {stderr})")
    assert np.all(np.abs(errors[300]) < 4 * stderr + 0.01), (errors[300], stderr)
    assert np.all(np.abs(errors[300]) < 0.1), errors[300]
    assert np.abs(errors[300]).mean() < np.abs(errors[1]).mean() / 2, errors


@pytest.mark.parametrize("case", ["mlp_ladder", "mlp_bidirectional_iaf", "resnet_bottom_up"])
def test_hierarchy_gaps_against_the_quadrature(case):
    """The best posterior of the stack's family found per example is better than the
    encoder's and no better than log p(x); AIS (started from it) finds log p(x)."""
    model = oracle._model(*oracle.CASES[case])
    exact, _ = oracle._quadrature(model.stack, oracle.X)
    result = gaps.inference_gaps(model, oracle.X, elbo_samples=20_000, is_samples=2000,
                                 ais_chains=32, ais_steps=300, local_steps=300,
                                 local_learning_rate=0.05, seed=(1, 2))
    amortized, local = result["amortized_elbo"], result["local_elbo"]
    print(f"{case}: exact {exact}\n  amortized {amortized}\n  local {local}\n"
          f"  AIS {result['log_prob_ais']}")
    # The ELBO estimates average 20 000 draws: a standard error of a few 1e-3 nats here
    # (the random stacks' ELBO gaps are 0.04-7 nats).
    assert np.all(local > amortized + 0.01), (local, amortized)   # the ascent found better q
    assert np.all(local < exact + 0.01), (local, exact)           # an ELBO: below log p(x)
    np.testing.assert_allclose(result["log_prob_ais"], exact, atol=0.03)
    np.testing.assert_allclose(result["approximation_gap"] + result["amortization_gap"],
                               result["log_prob_ais"] - amortized, atol=1e-9)
    # The amortized ELBO is the model's own ELBO estimator's expectation (MC KLs).
    elbo = model.elbo(np.tile(oracle.X, [2000, 1, 1, 1]), seed=np.array([7, 7])).numpy()
    elbo = elbo.reshape(2000, -1)
    np.testing.assert_allclose(amortized, elbo.mean(0),
                               atol=4 * elbo.std(0).max() / math.sqrt(2000) + 0.01)


def test_the_gaps_tool_on_a_trained_hierarchical_workdir(tmp_path):
    """`zoo.gaps` from the CLI on a trained two-layer `hvae` with an IAF per layer."""
    workdir = str(tmp_path / "hvae")
    run = test_gaps._cli("zoo.hvae", f"--workdir={workdir}", "--dataset=digits", "--epochs=2",
                         "--latent_sizes=4,2", "--hidden_units=32,16",
                         "--inference=bidirectional", "--iaf_steps=1", "--iaf_hidden_units=16",
                         "--iaf_context_size=4", "--export=false", "--image_summaries=false")
    assert run.returncode == 0, run.stderr[-3000:]
    run = test_gaps._cli("zoo.gaps", f"--workdir={workdir}", "--num_examples=20",
                         "--batch_size=20", "--ais_steps=100", "--is_samples=500",
                         "--elbo_samples=500", "--local_steps=100")
    assert run.returncode == 0, run.stderr[-3000:]
    with open(os.path.join(workdir, "gaps.json"), encoding="utf-8") as f:
        report = json.load(f)
    per = {k: np.array(v) for k, v in report["per_example"].items()}
    assert all(len(v) == 20 for v in per.values())
    np.testing.assert_allclose(per["approximation_gap"] + per["amortization_gap"],
                               per["log_prob_ais"] - per["amortized_elbo"], atol=1e-9)
    print({k: v for k, v in report.items() if k != "per_example"})
    assert report["amortization_gap"] > 0
    assert report["log_prob_ais"] > report["amortized_elbo"]
    assert abs(report["log_prob_ais"] - report["log_prob_is"]) < 0.5
    assert report["latent_size"] == 6                       # z_1 and z_2, concatenated
