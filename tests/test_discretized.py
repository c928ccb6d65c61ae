"""Discretized logistic (mixture) likelihoods: bins sum to 1, edges, float64 oracles, bits/dim."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from tests.layer_contract import check_family
from tfvae.distributions import discretized
from tfvae.objectives import elbo as objectives

RNG = np.random.default_rng(3)
BINS = np.arange(256) / 255.0


def _all_bins(dist, batch_shape):
    """log P(k) for every k, [256, *batch_shape], from the per-element distribution."""
    inner = dist.distribution  # scalar events: one log-prob per pixel channel
    x = np.broadcast_to(BINS.reshape(-1, *[1] * len(batch_shape)), (256, *batch_shape))
    return inner.log_prob(x.astype(np.float32)).numpy()


def _mixture_params(family, n, log_scales):
    params = RNG.normal(size=(n, *family.event_shape, 3, family.num_components)) * 2
    params[..., 2, :] = RNG.choice(log_scales, size=params[..., 2, :].shape)
    return params.reshape(n, -1).astype("float32")


@pytest.mark.parametrize("log_scales", [(-1.0, 0.0, -3.0), (-30.0, -9.0, 7.0, 30.0)])
def test_mixture_bins_sum_to_one_and_are_finite(log_scales):
    family = discretized.DiscretizedLogisticMixture((3, 2, 2), num_components=4,
                                                    min_log_scale=None)
    dist = check_family(family, _mixture_params(family, 5, log_scales))
    assert dist.event_shape == (3, 2, 2) and dist.batch_shape == (5,)
    log_p = _all_bins(dist, (5, 3, 2, 2))
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(np.exp(log_p).sum(axis=0), 1.0, atol=2e-5)


def test_single_logistic_bins_sum_to_one_for_extreme_scales():
    family = discretized.DiscretizedLogistic((4, 1, 1), min_log_scale=None)
    loc = np.array([-3.0, 0.2, 1.0, 0.0])
    log_scale = np.array([-40.0, 40.0, -8.0, 0.0])
    params = np.stack([loc, log_scale], -1).reshape(1, -1).astype("float32")
    log_p = _all_bins(check_family(family, params), (1, 4, 1, 1))
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(np.exp(log_p).sum(axis=0), 1.0, atol=2e-5)
    # Scale e^-40 at loc -3: all mass in bin 0 (the edge bin takes the whole tail).
    assert log_p[0, 0, 0, 0, 0] == pytest.approx(0.0, abs=1e-6)


def _oracle(k, loc, scale, bins=256):
    """log P(bin k) in float64 from the logistic CDF with edge bins taking the tails."""
    y = 2 * k / (bins - 1) - 1
    a = (y + 1 / (bins - 1) - loc) / scale if k < bins - 1 else math.inf
    b = (y - 1 / (bins - 1) - loc) / scale if k > 0 else -math.inf
    if b > 0:  # upper tail: the survival functions' difference keeps its digits
        return math.log(special.expit(-b) - special.expit(-a))
    return math.log(special.expit(a) - special.expit(b))


@pytest.mark.parametrize("k", [0, 1, 100, 254, 255])
@pytest.mark.parametrize("loc, log_scale", [(0.1, -2.0), (-0.9, -4.0), (0.95, -1.0)])
def test_bin_probabilities_match_the_logistic_cdf(k, loc, log_scale):
    got = discretized.bin_log_probs(tf.constant(k / 255.0), tf.constant(loc), tf.constant(log_scale), 256)
    assert float(got) == pytest.approx(_oracle(k, loc, math.exp(log_scale)), rel=1e-4, abs=1e-5)


def test_far_tail_bins_keep_their_log_mass():
    # 40 scales above the mean, float32 sigmoid(a) and sigmoid(b) both round to
    # 1 and their difference to 0; the log-space form keeps log P ~ -40.
    y, scale = 2 * 128 / 255 - 1, 0.0125
    b = (y - 1 / 255 + 0.5) / scale
    expected = -b + math.log(-math.expm1(-(2 / 255) / scale))   # log(e^-b - e^-a), e^-b << 1
    got = float(discretized.bin_log_probs(tf.constant(128 / 255.0), tf.constant(-0.5),
                                          tf.constant(math.log(scale)), 256))
    assert float(tf.sigmoid(tf.constant(b))) == 1.0
    assert got == pytest.approx(expected, rel=1e-4)


def test_gradients_are_finite_for_extreme_scales():
    log_scale = tf.Variable([-30.0, -7.0, 0.0, 12.0, 40.0])
    loc = tf.Variable([0.3, -0.2, 0.0, 0.5, -0.7])
    x = tf.constant([0.0, 1.0, 0.5, 100 / 255, 1.0])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(discretized.bin_log_probs(x, loc, log_scale, 256))
    grads = tape.gradient(total, [loc, log_scale])
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_mixture_log_prob_is_the_weighted_mixture_of_bins():
    family = discretized.DiscretizedLogisticMixture((1, 1, 1), num_components=3)
    logits, loc, log_scale = [0.3, -1.0, 2.0], [-0.5, 0.1, 0.6], [-2.0, -3.0, -1.5]
    params = np.array([logits + loc + log_scale], np.float32)
    weights = special.softmax(logits)
    for k in (0, 17, 200, 255):
        expected = math.log(sum(w * math.exp(_oracle(k, m, math.exp(s)))
                                for w, m, s in zip(weights, loc, log_scale)))
        got = family.make(params).log_prob(np.full((1, 1, 1, 1), k / 255.0, np.float32))
        assert float(got[0]) == pytest.approx(expected, rel=1e-4)


def test_bits_per_dim_is_the_discrete_negative_log2_likelihood():
    family = discretized.DiscretizedLogisticMixture((2, 2, 3), num_components=2)
    params = _mixture_params(family, 3, (-2.0, -1.0))
    dist = family.make(params)
    x = (RNG.integers(0, 256, size=(3, 2, 2, 3)) / 255.0).astype("float32")
    log_p = _all_bins(dist, (3, 2, 2, 3))                     # [256, 3, 2, 2, 3]
    index = np.round(x * 255).astype(int)
    per_dim = np.take_along_axis(log_p, index[np.newaxis], 0)[0]
    expected = -(per_dim / math.log(2)).reshape(3, -1).mean(axis=1)    # bits per dimension
    got = objectives.bits_per_dim(dist.log_prob(x), 12)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_sample_and_mean():
    family = discretized.DiscretizedLogisticMixture((2, 2, 1), num_components=2)
    params = _mixture_params(family, 2, (-2.5, -3.0))
    dist = family.make(params)
    samples = dist.sample(400, seed=[1, 2]).numpy()
    assert samples.shape == (400, 2, 2, 2, 1)
    np.testing.assert_allclose(samples * 255, np.round(samples * 255), atol=1e-3)
    assert samples.min() >= 0 and samples.max() <= 1
    exact_mean = (np.exp(_all_bins(dist, (2, 2, 2, 1))) * BINS[:, None, None, None, None]).sum(0)
    np.testing.assert_allclose(dist.mean(), exact_mean, atol=2e-3)       # midpoint rule
    np.testing.assert_allclose(samples.mean(0), exact_mean, atol=0.06)   # 400 samples


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_components=0), "num_components"),
    (dict(num_bins=1), "num_bins"),
    (dict(min_log_scale=float("nan")), "min_log_scale"),
])
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        discretized.DiscretizedLogisticMixture((2, 2, 1), **kwargs)
