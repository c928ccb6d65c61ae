"""Held-out evaluation: bits/dim only where it is a discrete likelihood, matching -log2 P(k) / D.

Each likelihood family is evaluated through `evaluation.evaluate_functions`
on data whose log-probability is computed here by hand in float64 (numpy /
scipy, not the family's code), and through `evaluation.evaluate` on models.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from tfvae.distributions import discretized
from tfvae.evaluation import estimators as evaluation
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.flows import density
from tfvae.models import VAE
from tfvae.models import FlowDensity

RNG = np.random.default_rng(11)
SHAPE = (3, 2, 1)
D = 6
GREY = (RNG.integers(0, 256, size=(10, *SHAPE)) / 255.0).astype("float32")
BINARY = (GREY > 0.5).astype("float32")


def _run(family, params, x, num_samples=1):
    """evaluate_functions on the family's exact log_prob at fixed params [n, params_size]."""
    dist = family.make(tf.constant(params))
    log_p = dist.log_prob(x).numpy()
    dataset = tf.data.Dataset.from_tensor_slices({"image": x}).batch(4)
    offsets = iter(range(0, len(x) + 4, 4))

    def log_prob_fn(batch, seed):
        start = next(offsets)
        return log_p[start:start + len(batch["image"])]

    result = evaluation.evaluate_functions(
        lambda batch, seed: tf.zeros([tf.shape(batch["image"])[0]]), log_prob_fn, dataset,
        num_samples, likelihood_support=family.support)
    return result, log_p


def _bits(log_p_by_hand):
    return -np.mean(log_p_by_hand) / (D * math.log(2.0))


def test_bernoulli_on_binary_data_is_discrete_with_bits_per_dim():
    logits = RNG.normal(size=(10, D)).astype("float32")
    result, _ = _run(families.Bernoulli(SHAPE), logits, BINARY)
    p = special.expit(logits.astype(np.float64))
    x = BINARY.reshape(10, D)
    by_hand = np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=-1)
    assert result["likelihood_kind"] == "discrete"
    assert result["bits_per_dim"] == pytest.approx(_bits(by_hand), rel=1e-5)
    assert result["bits_per_dim"] > 0
    assert result["bits_per_dim_density_256"] is None


def test_bernoulli_on_grey_values_is_a_cross_entropy_without_bits_per_dim():
    logits = RNG.normal(size=(10, D)).astype("float32")
    result, _ = _run(families.Bernoulli(SHAPE), logits, GREY)
    assert result["likelihood_kind"] == "cross_entropy"
    assert result["log_likelihood"] is not None
    assert result["bits_per_dim"] is None and result["bits_per_dim_stderr"] is None
    assert result["bits_per_dim_density_256"] is None


def test_gaussian_is_a_density_in_nats_with_the_256_scale_figure_for_8_bit_data():
    loc = GREY.reshape(10, D) + 0.01
    family = families.Gaussian(SHAPE, scale=0.02)      # sharp: -log p < 0, a "negative bits"
    result, _ = _run(family, loc, GREY)
    by_hand = np.sum(-0.5 * ((GREY.reshape(10, D) - loc) / 0.02) ** 2
                     - math.log(0.02 * math.sqrt(2 * math.pi)), axis=-1)
    assert np.mean(by_hand) > 0                          # the density exceeds 1
    assert result["likelihood_kind"] == "density"
    assert result["log_likelihood"] == pytest.approx(np.mean(by_hand), rel=1e-5)
    assert result["bits_per_dim"] is None
    expected = (-np.mean(by_hand) + D * math.log(256.0)) / (D * math.log(2.0))
    assert result["bits_per_dim_density_256"] == pytest.approx(expected, rel=1e-5)
    assert result["bits_per_dim_density_256"] > 0


def test_gaussian_on_data_off_the_8_bit_grid_gives_nats_only():
    x = RNG.random((10, *SHAPE)).astype("float32")
    result, _ = _run(families.Gaussian(SHAPE, scale=0.5), x.reshape(10, D), x)
    assert result["likelihood_kind"] == "density"
    assert result["bits_per_dim"] is None and result["bits_per_dim_density_256"] is None


def _logistic_bin_log_prob(k, loc, scale):
    """log P(k) of one discretized logistic in float64, edge bins taking the tails."""
    y = 2 * k / 255 - 1
    upper = special.expit((y + 1 / 255 - loc) / scale) if k < 255 else 1.0
    lower = special.expit((y - 1 / 255 - loc) / scale) if k > 0 else 0.0
    return math.log(upper - lower)


def test_discretized_logistic_is_discrete_and_bits_match_the_bins_by_hand():
    family = discretized.DiscretizedLogistic(SHAPE, min_log_scale=None)
    # Locations near the data's bins: the float64 CDF differences keep their digits.
    loc = 2 * GREY.reshape(10, D) - 1 + RNG.normal(scale=0.03, size=(10, D))
    log_scale = RNG.uniform(-4, -2, size=(10, D))
    params = np.stack([loc, log_scale], -1).reshape(10, -1).astype("float32")
    result, _ = _run(family, params, GREY)
    counts = np.round(GREY.reshape(10, D) * 255).astype(int)
    by_hand = np.array([[_logistic_bin_log_prob(counts[n, j], float(np.float32(loc[n, j])),
                                                math.exp(float(np.float32(log_scale[n, j]))))
                         for j in range(D)] for n in range(10)]).sum(-1)
    assert result["likelihood_kind"] == "discrete"
    assert result["bits_per_dim"] == pytest.approx(_bits(by_hand), rel=1e-4)


def test_discretized_logistic_mixture_is_discrete():
    family = discretized.DiscretizedLogisticMixture(SHAPE, num_components=2)
    params = RNG.normal(size=(10, family.params_size)).astype("float32")
    result, log_p = _run(family, params, GREY)
    assert result["likelihood_kind"] == "discrete"
    assert result["bits_per_dim"] == pytest.approx(_bits(log_p), rel=1e-5)
    assert result["bits_per_dim"] > 0


def test_categorical_is_discrete():
    family = families.Categorical(4, event_shape=(D,))
    logits = RNG.normal(size=(10, D * 4)).astype("float32")
    labels = RNG.integers(0, 4, size=(10, D))
    result, log_p = _run(family, logits, labels.astype("float32"))
    # by hand: log softmax of the chosen class
    z = logits.reshape(10, D, 4).astype(np.float64)
    log_softmax = z - special.logsumexp(z, axis=-1, keepdims=True)
    by_hand = np.take_along_axis(log_softmax, labels[..., None], -1).sum((-1, -2))
    np.testing.assert_allclose(log_p, by_hand, rtol=1e-5)
    assert result["likelihood_kind"] == "discrete"
    assert result["bits_per_dim"] == pytest.approx(_bits(by_hand), rel=1e-5)


def test_unknown_support_gives_no_bits_and_bad_support_is_refused():
    dataset = tf.data.Dataset.from_tensor_slices({"image": BINARY}).batch(5)
    fn = lambda batch, seed: tf.zeros([tf.shape(batch["image"])[0]])  # noqa: E731
    result = evaluation.evaluate_functions(fn, fn, dataset, 3)
    assert result["likelihood_kind"] is None and result["bits_per_dim"] is None
    with pytest.raises(ValueError, match="likelihood_support"):
        evaluation.evaluate_functions(fn, fn, dataset, 3, likelihood_support="bits")


def _vae(likelihood):
    model = VAE(networks.MLP([8], 8), networks.MLP([8], likelihood.params_size),
                latents.LatentLayer(families.DiagonalGaussian(2)), likelihood, seed=0)
    model.build((None, *SHAPE))
    return model


@pytest.mark.parametrize("likelihood, data, kind", [
    (families.Bernoulli(SHAPE), BINARY, "discrete"),
    (families.Bernoulli(SHAPE), GREY, "cross_entropy"),
    (families.Gaussian(SHAPE), GREY, "density"),
    (discretized.DiscretizedLogistic(SHAPE), GREY, "discrete"),
])
def test_evaluate_names_the_kind_of_a_model_and_reports_bits_only_if_discrete(likelihood, data,
                                                                               kind):
    model = _vae(likelihood)
    dataset = tf.data.Dataset.from_tensor_slices({"image": data}).batch(5)
    result = evaluation.evaluate(model, dataset, num_samples=4, chunk_size=2)
    assert result["likelihood_kind"] == kind
    if kind == "discrete":
        assert result["bits_per_dim"] == pytest.approx(
            -result["log_likelihood"] / (D * math.log(2.0)), rel=1e-6)
        assert result["bits_per_dim"] > 0
    else:
        assert result["bits_per_dim"] is None
    assert (result["bits_per_dim_density_256"] is not None) == (kind == "density")


@pytest.mark.parametrize("num_bits, kind", [(8, "discrete"), (0, "density")])
def test_flow_density_is_discrete_only_when_dequantized(num_bits, kind):
    model = FlowDensity((2, 2, 1), density.FlowPrior(4, flow="maf", num_flows=1,
                                                     hidden_units=(8,), seed=0),
                        num_bits=num_bits, seed=0)
    model.build((None, 2, 2, 1))
    x = GREY[:8, :2, :2] if num_bits else RNG.normal(size=(8, 2, 2, 1)).astype("float32")
    result = evaluation.evaluate(model, tf.data.Dataset.from_tensor_slices(x).batch(4),
                                 num_samples=2)
    assert result["likelihood_kind"] == kind
    assert (result["bits_per_dim"] is not None) == (kind == "discrete")
