"""FlowDensity: the dequantized discrete likelihood against its exact value.

With every flow weight at zero the MAF / RealNVP flow is the identity, so
the model density of the logit-transformed y is N(0, I) and the exact
probability of an 8-bit value k is a product of Gaussian CDF differences over
the monotone map t(y) = logit(alpha + (1 - 2 alpha) y), y in [k/256, (k+1)/256).
The importance-sampled bound must converge to it, the single-draw ELBO stay
below it, and bits/dim follow.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from tfvae.flows import density
from tfvae.models import FlowDensity


def _zero_flow_model(flow, alpha):
    model = FlowDensity((2, 2, 1), density.FlowPrior(4, flow=flow, num_flows=2,
                                                     hidden_units=(8,), seed=0),
                        num_bits=8, logit_alpha=alpha, seed=0)
    model.build((None, 2, 2, 1))
    for weight in model.trainable_weights:
        weight.assign(tf.zeros_like(weight))
    return model


def _exact_log_prob(counts, alpha):
    def t(y):
        s = alpha + (1 - 2 * alpha) * y
        return np.log(s) - np.log1p(-s) if alpha else y
    lo, hi = t(counts / 256.0), t((counts + 1) / 256.0)
    cdf = lambda v: 0.5 * (1 + special.erf(v / math.sqrt(2)))  # noqa: E731
    return np.log(cdf(hi) - cdf(lo)).reshape(len(counts), -1).sum(-1)


@pytest.mark.parametrize("flow, alpha", [("maf", 0.05), ("realnvp", 0.05), ("maf", 0.0)])
def test_dequantized_bound_converges_to_the_exact_discrete_likelihood(flow, alpha):
    model = _zero_flow_model(flow, alpha)
    counts = np.array([[0, 37, 128, 255], [12, 200, 90, 254]], np.float64)
    x = (counts / 255.0).reshape(2, 2, 2, 1).astype("float32")
    exact = _exact_log_prob(counts, alpha)
    is_estimate = model.log_prob(x, num_samples=4000, chunk_size=1000, seed=(1, 2)).numpy()
    np.testing.assert_allclose(is_estimate, exact, atol=0.02)
    elbo = tf.function(lambda s: model.elbo(x, seed=s))
    elbos = np.stack([elbo(tf.constant([3, s])).numpy() for s in range(200)])
    # Jensen: the single-draw bound is below log P(k); within a bin the density
    # hardly varies, so the gap is tiny and only its sign (up to MC error) is tested.
    stderr = elbos.std(0) / math.sqrt(len(elbos))
    assert np.all(elbos.mean(0) < exact + 3 * stderr + 1e-5)
    np.testing.assert_allclose(elbos.mean(0), exact, atol=0.02)


def test_continuous_data_use_the_flow_density_and_validate_shapes():
    prior = density.FlowPrior(2, flow="maf", num_flows=2, hidden_units=(8,), seed=0)
    model = FlowDensity((2,), prior, seed=0)
    x = np.random.default_rng(0).normal(size=(5, 2)).astype("float32")
    model(x)
    np.testing.assert_allclose(model.log_prob(x), prior(x), rtol=1e-6)
    np.testing.assert_allclose(model.elbo(x), prior(x), rtol=1e-6)
    assert model.sample(3, seed=(0, 1)).shape == (3, 2)
    with pytest.raises(ValueError, match=r"Expected examples of shape \[batch, 2\]"):
        model.log_prob(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="act on 2 dimensions"):
        FlowDensity((2,), density.FlowPrior(3, seed=0))


def test_images_sample_in_the_unit_interval():
    model = _zero_flow_model("maf", 0.05)
    samples = model.sample(16, seed=(0, 0)).numpy()
    assert samples.shape == (16, 2, 2, 1)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    np.testing.assert_allclose(samples * 255, np.round(samples * 255), atol=1e-4)
