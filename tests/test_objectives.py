"""Objectives: KL estimators, free bits, warm-up, chunked IS, bits/dim."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import families
from tfvae.objectives import elbo as objectives

tfd = tfp.distributions


@pytest.mark.parametrize("family", [families.DiagonalGaussian(4),
                                    families.FullCovarianceGaussian(4)])
def test_analytic_and_monte_carlo_kl_agree(family):
    params = np.random.default_rng(0).normal(size=(3, family.params_size)).astype("float32") * 0.7
    q = family.make(params)
    p = tfd.MultivariateNormalDiag(tf.zeros(4), tf.ones(4))
    n = 100_000
    z = q.sample(n, seed=(1, 2))
    mc = objectives.kl_divergence(q, p, z, analytic=False).numpy()          # [n, 3]
    analytic = objectives.kl_divergence(q, p).numpy()                       # [3]
    stderr = mc.std(0) / math.sqrt(n)
    assert np.all(np.abs(mc.mean(0) - analytic) < 4 * stderr + 1e-4), (mc.mean(0), analytic)


def test_kl_per_dimension_sums_to_total_and_rejects_full_covariance():
    q = families.DiagonalGaussian(6).make(np.linspace(-1, 1, 24, dtype="float32").reshape(2, 12))
    p = tfd.MultivariateNormalDiag(tf.zeros(6), tf.ones(6))
    per_dim = objectives.kl_per_dimension(q, p)
    np.testing.assert_allclose(tf.reduce_sum(per_dim, -1), objectives.kl_divergence(q, p),
                               rtol=1e-5)
    z = q.sample(3, seed=(0, 1))
    np.testing.assert_allclose(
        tf.reduce_sum(objectives.kl_per_dimension(q, p, z, analytic=False), -1),
        objectives.kl_divergence(q, p, z, analytic=False), rtol=1e-5, atol=1e-5)
    full = families.FullCovarianceGaussian(6).make(np.zeros((2, 27), "float32"))
    with pytest.raises(ValueError, match="factorized"):
        objectives.kl_per_dimension(full, p)
    with pytest.raises(ValueError, match="`z` is required"):
        objectives.kl_divergence(q, p, analytic=False)


def test_free_bits_by_hand():
    # Two examples, four latents in two groups of two.
    kl_dims = tf.constant([[0.1, 0.2, 1.0, 2.0],
                           [0.3, 0.2, 3.0, 0.0]])
    groups = objectives.group_sum(kl_dims, 2)
    np.testing.assert_allclose(groups, [[0.3, 3.0], [0.5, 3.0]], rtol=1e-6)
    # E_batch per group = [0.4, 3.0]; with lambda = 1: max(1, 0.4) + max(1, 3) = 4.
    assert objectives.free_bits_rate(groups, 1.0).numpy() == pytest.approx(4.0)
    # With lambda = 0.25 neither group is clamped: 0.4 + 3.0.
    assert objectives.free_bits_rate(groups, 0.25).numpy() == pytest.approx(3.4)
    log_lik = tf.constant([[-10.0, -20.0]])
    kl = tf.reduce_sum(kl_dims, -1)                                   # [3.3, 3.5]
    out = objectives.elbo_loss(log_lik, kl, beta=0.5, kl_groups=groups, free_bits=1.0)
    assert out["loss"].numpy() == pytest.approx(15.0 + 0.5 * 4.0)
    assert out["elbo"].numpy() == pytest.approx(-(15.0 + 3.4))        # unclamped bound
    assert out["rate"].numpy() == pytest.approx(3.4)
    assert out["distortion"].numpy() == pytest.approx(15.0)
    plain = objectives.elbo_loss(log_lik, kl, beta=0.5)
    assert plain["loss"].numpy() == pytest.approx(15.0 + 0.5 * 3.4)
    # The gradient of a clamped group is zero.
    with tf.GradientTape() as tape:
        tape.watch(kl_dims)
        rate = objectives.free_bits_rate(objectives.group_sum(kl_dims, 2), 1.0)
    np.testing.assert_allclose(tape.gradient(rate, kl_dims), [[0, 0, .5, .5], [0, 0, .5, .5]])
    with pytest.raises(ValueError, match="free_bits_groups"):
        objectives.group_sum(kl_dims, 3)


def test_linear_warmup_by_hand():
    assert objectives.linear_warmup(0, 100).numpy() == 0.0
    assert objectives.linear_warmup(25, 100).numpy() == pytest.approx(0.25)
    assert objectives.linear_warmup(250, 100).numpy() == 1.0
    assert objectives.linear_warmup(0, 0).numpy() == 1.0


@pytest.mark.parametrize("num_samples, chunk", [(1, 4), (10, 4), (12, 4), (7, 100)])
def test_chunked_log_mean_exp_equals_direct(num_samples, chunk):
    rng = np.random.default_rng(num_samples)
    weights = rng.normal(size=(chunk * (num_samples // chunk + 1), 5)).astype("float32") * 30
    fn = lambda c: tf.constant(weights)[c * chunk:(c + 1) * chunk]  # noqa: E731
    got = objectives.chunked_log_mean_exp(fn, num_samples, chunk)
    expected = objectives.log_mean_exp(tf.constant(weights[:num_samples]))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Extreme log weights: no overflow (logsumexp).
    big = objectives.log_mean_exp(tf.constant([[1000.0], [1000.0]]))
    assert big.numpy()[0] == pytest.approx(1000.0)


def test_bits_per_dim():
    assert objectives.bits_per_dim(-784 * math.log(2), 784) == pytest.approx(1.0)
