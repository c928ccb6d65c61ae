"""MADE, IAF posteriors and flow priors (book §3.3-3.4, Algorithm 3; §4.4) against oracles:
autoregressive Jacobians, autodiff log-dets, closed-form Gaussians, numerical
normalization and a maximum-likelihood fit to a known density."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests.layer_contract import check_layer
from tfvae.flows.density import FlowPrior
from tfvae.flows.iaf import IAF
from tfvae.nn.made import MADE

tfd = tfp.distributions


def _fresh(x):
    """A new tensor from numpy, so TFP's bijector cache cannot answer for it."""
    return tf.constant(np.asarray(x))


def _jacobian(fn, x):
    """Autodiff Jacobian [batch, d_out..., d] of fn at x [batch, d] (float64)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.batch_jacobian(y, x).numpy()


# ---------------------------------------------------------------- MADE


@pytest.mark.parametrize("ordering", ["natural", "reversed", "random"])
@pytest.mark.parametrize("context_size", [0, 3])
@pytest.mark.parametrize("hidden_units", [(3,), (7, 12, 9)])
def test_made_is_autoregressive(ordering, context_size, hidden_units):
    d = 5
    made = MADE(d, hidden_units, params=2, context_size=context_size, ordering=ordering, seed=4,
                activation="tanh", dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, d))
    context = _fresh(rng.normal(size=(16, context_size))) if context_size else None
    jac = np.abs(_jacobian(lambda v: made(v, context=context), x)).max(axis=(0, 2))  # [i, j]
    deg = made.degrees
    assert sorted(made.order) == list(range(d))
    np.testing.assert_array_equal(deg[made.order], np.arange(1, d + 1))
    allowed = deg[None, :] < deg[:, None]  # [i, j]: output i may see input j
    np.testing.assert_array_equal(jac[~allowed], 0.0)
    if min(hidden_units) >= d:  # Every degree present in every layer: every path exists.
        assert np.all(jac[allowed] > 1e-6), jac
    else:
        assert np.any(jac[allowed] > 1e-6), jac
    if context_size and min(hidden_units) >= d:  # The first variable's outputs see h too.
        c = rng.normal(size=(16, context_size))
        jac_h = _jacobian(lambda h: made(_fresh(x), context=h), c)  # [batch, d, 2, context]
        assert np.all(np.abs(jac_h).max(axis=(0, 2, 3)) > 1e-6)


def test_made_orderings_shapes_and_contract():
    assert list(MADE(4, (8,)).order) == [0, 1, 2, 3]
    assert list(MADE(4, (8,), ordering="reversed").order) == [3, 2, 1, 0]
    np.testing.assert_array_equal(MADE(9, (8,), ordering="random", seed=2).order,
                                  MADE(9, (8,), ordering="random", seed=2).order)
    made = MADE(4, (8, 8), context_size=3)
    out = made(np.zeros((2, 6, 4), "float32"), context=np.zeros((6, 3), "float32"))
    assert out.shape == (2, 6, 4, 2)  # Context [batch, c] broadcasts against [sample, batch, d].
    check_layer(MADE(4, (8,), params=3, ordering="random", seed=1), (3, 4), (3, 4, 3), 4)


# ---------------------------------------------------------------- IAF


def _iaf_and_context(num_flows=3, d=4, context_size=5, batch=6):
    iaf = IAF(d, num_flows, hidden_units=(16, 16), context_size=context_size, seed=3,
              dtype="float64")
    iaf.build((None, context_size))
    h = _fresh(np.random.default_rng(1).normal(size=(batch, context_size)))
    return iaf, h


def test_iaf_contract():
    check_layer(IAF(3, 2, hidden_units=(8,), context_size=5), (3, 5), (3, 5),
                expected_trainable_weights=2 * 5)  # Per MADE: 2 kernels, 2 biases, context.
    assert IAF(3, 2, context_size=5).params_size == 5


def test_iaf_matches_algorithm_3_step_by_step():
    iaf, h = _iaf_and_context()
    assert [m.ordering for m in iaf.mades] == ["natural", "reversed", "natural"]
    z0 = _fresh(np.random.default_rng(2).normal(size=(6, 4)))
    z, log_det = z0, 0.0
    for made in iaf.mades:  # Algorithm 3, §3.4, by hand.
        m, s = tf.unstack(made(z, context=h), axis=-1)
        sigma = tf.sigmoid(s)
        z = sigma * z + (1 - sigma) * m
        log_det += tf.reduce_sum(tf.math.log(sigma), axis=-1)
    bijector = iaf.bijector(h)
    np.testing.assert_allclose(bijector.forward(z0), z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bijector.forward_log_det_jacobian(z0, event_ndims=1), log_det,
                               rtol=1e-12, atol=1e-12)
    # Initialization: s starts around +2, so sigma starts near 1 (mean ~ sigmoid(2) = 0.88).
    sigma = tf.sigmoid(iaf.mades[0](z0, context=h)[..., 1]).numpy()
    assert 0.75 < sigma.mean() < 0.97, sigma.mean()


def test_iaf_inverse_and_log_det():
    iaf, h = _iaf_and_context()
    bijector = iaf.bijector(h)
    z = np.random.default_rng(3).normal(size=(2, 6, 4))  # [sample, batch, d]
    y = bijector.forward(_fresh(z)).numpy()
    np.testing.assert_allclose(bijector.inverse(_fresh(y)), z, rtol=1e-10, atol=1e-10)
    jac = _jacobian(bijector.forward, z[0])  # [batch, d, d]
    _, slogdet = np.linalg.slogdet(jac)
    np.testing.assert_allclose(bijector.forward_log_det_jacobian(_fresh(z[0]), event_ndims=1),
                               slogdet, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(bijector.inverse_log_det_jacobian(_fresh(y[0]), event_ndims=1),
                               -slogdet, rtol=1e-10, atol=1e-10)


def test_iaf_log_q_of_own_samples_matches_inverse_density():
    iaf, h = _iaf_and_context()
    rng = np.random.default_rng(4)
    base = tfd.MultivariateNormalDiag(_fresh(rng.normal(size=(6, 4))),
                                      _fresh(np.exp(0.3 * rng.normal(size=(6, 4)))))
    q = tfd.TransformedDistribution(base, iaf.bijector(h))
    z, log_q = q.experimental_sample_and_log_prob(3, seed=(1, 2))  # [3, 6, 4], [3, 6]
    log_q_inverse = q.log_prob(_fresh(z.numpy()))  # Sequential inverse, no cache.
    np.testing.assert_allclose(log_q_inverse, log_q, rtol=1e-9, atol=1e-9)


def test_iaf_with_constant_made_outputs_is_a_diagonal_gaussian():
    iaf, h = _iaf_and_context(d=3)
    rng = np.random.default_rng(5)
    scale_factor, shift = np.ones(3), np.zeros(3)
    for made in iaf.mades:  # Zero output kernels: each MADE outputs its bias (m, s).
        made.output_kernel.assign(np.zeros(made.output_kernel.shape))
        bias = rng.normal(size=(3, 2))
        made.output_bias.assign(bias)
        sigma = 1 / (1 + np.exp(-bias[:, 1]))
        scale_factor, shift = sigma * scale_factor, sigma * shift + (1 - sigma) * bias[:, 0]
    loc, scale = rng.normal(size=(6, 3)), np.exp(0.5 * rng.normal(size=(6, 3)))
    q = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(_fresh(loc), _fresh(scale)),
                                    iaf.bijector(h))
    # z_T = a * z_0 + c  =>  q(z_T|x) = N(a * loc + c, (a * scale)^2).
    closed_form = tfd.MultivariateNormalDiag(scale_factor * loc + shift, scale_factor * scale)
    z = q.sample(4, seed=(3, 4)).numpy()
    np.testing.assert_allclose(q.log_prob(_fresh(z)), closed_form.log_prob(z), rtol=1e-10)
    grid = rng.normal(size=(4, 6, 3)) * 2  # Arbitrary points, through the inverse.
    np.testing.assert_allclose(q.log_prob(_fresh(grid)), closed_form.log_prob(grid), rtol=1e-10)


# ---------------------------------------------------------------- flow priors


@pytest.mark.parametrize("flow", ["maf", "realnvp"])
@pytest.mark.parametrize("d", [2, 3])
def test_flow_prior_inverse_and_log_det(flow, d):
    prior = FlowPrior(d, flow=flow, num_flows=3, hidden_units=(16, 16), seed=7, dtype="float64")
    prior.build((None, d))
    bijector = prior.bijector()
    x = np.random.default_rng(6).normal(size=(8, d))
    y = bijector.forward(_fresh(x)).numpy()
    np.testing.assert_allclose(bijector.inverse(_fresh(y)), x, rtol=1e-10, atol=1e-10)
    _, slogdet = np.linalg.slogdet(_jacobian(bijector.forward, x))
    np.testing.assert_allclose(bijector.forward_log_det_jacobian(_fresh(x), event_ndims=1),
                               slogdet, rtol=1e-10, atol=1e-10)
    dist = prior.distribution()
    assert dist.event_shape == (d,) and dist.batch_shape == ()
    expected = tfd.MultivariateNormalDiag(np.zeros(d), np.ones(d)).log_prob(x) - slogdet
    np.testing.assert_allclose(prior(_fresh(y)), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("flow", ["maf", "realnvp"])
def test_flow_prior_normalizes_in_2d(flow):
    prior = FlowPrior(2, flow=flow, num_flows=4, hidden_units=(32, 32), seed=11, dtype="float64")
    dist = prior.distribution()
    samples = dist.sample(2000, seed=(5, 6)).numpy()
    half_width, n = 10.0, 300
    assert np.abs(samples).max() < half_width - 2  # The box holds the mass.
    edges = np.linspace(-half_width, half_width, n + 1)
    centers = (edges[1:] + edges[:-1]) / 2
    grid = np.stack(np.meshgrid(centers, centers, indexing="ij"), -1).reshape(-1, 2)
    log_p = dist.log_prob(_fresh(grid)).numpy()
    mass = np.exp(log_p).sum() * (edges[1] - edges[0]) ** 2  # Midpoint rule.
    assert abs(mass - 1) < 1e-3, mass  # Observed: within 1e-6.
    # Non-trivial weights: the density is far from the base N(0, I).
    standard = tfd.MultivariateNormalDiag(np.zeros(2), np.ones(2)).log_prob(samples)
    assert np.abs(dist.log_prob(_fresh(samples)) - standard).max() > 0.5


def _banana():
    """z_1 ~ N(0, 1), z_2 | z_1 ~ N(z_1^2 / 2 - 1, 0.5^2): exact log-density, non-Gaussian."""
    return tfd.JointDistributionSequential([
        tfd.Normal(0.0, 1.0),
        lambda z1: tfd.Normal(0.5 * z1 ** 2 - 1.0, 0.5)])


@pytest.mark.parametrize("flow", ["maf", "realnvp"])
def test_flow_prior_fits_a_known_density_by_maximum_likelihood(flow):
    # Margin in nats of held-out mean log-likelihood. Observed: true -2.130; trained MAF -2.147,
    # RealNVP -2.157; untrained -2.94 / -2.82.
    margin = 0.15
    target = _banana()
    train = tf.stack(target.sample(4096, seed=(7, 8)), -1)
    test = tf.stack(target.sample(4096, seed=(9, 10)), -1)
    true_ll = float(tf.reduce_mean(target.log_prob(tf.unstack(test, axis=-1))))
    prior = FlowPrior(2, flow=flow, num_flows=4, hidden_units=(32, 32), seed=1)
    initial_ll = float(tf.reduce_mean(prior(test)))
    assert initial_ll < true_ll - 3 * margin  # The test fails for an untrained flow.
    optimizer = keras.optimizers.Adam(5e-3)
    optimizer.build(prior.trainable_weights)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(prior(batch))
        optimizer.apply_gradients(zip(tape.gradient(loss, prior.trainable_weights),
                                      prior.trainable_weights))
        return loss

    for epoch in range(20):  # 20 epochs of 16 batches of 256: 320 Adam steps.
        for batch in tf.split(tf.random.shuffle(train, seed=epoch), 16):
            step(batch)
    held_out_ll = float(tf.reduce_mean(prior(test)))
    assert held_out_ll > true_ll - margin, (held_out_ll, true_ll, initial_ll)


@pytest.mark.parametrize("flow", ["maf", "realnvp"])
def test_flow_prior_contract(flow):
    check_layer(FlowPrior(3, flow=flow, num_flows=2, hidden_units=(16, 16), seed=0), (5, 3), (5,),
                expected_trainable_weights=2 * 6)  # Per step: 3 kernels, 3 biases.
    check_layer(FlowPrior(784, flow=flow), (5, 784), (5,), expected_trainable_weights=4 * 6)


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("make, message", [
    (lambda: MADE(0, (8,)), "event_size=0"),
    (lambda: MADE(3, ()), "hidden_units=()"),
    (lambda: MADE(3, (8,), ordering="shuffled"), "ordering='shuffled'"),
    (lambda: MADE(3, (8,), ordering="random"), "seed=None"),
    (lambda: MADE(3, (8,), output_bias=(0.0,)), "output_bias"),
    (lambda: MADE(3, (8,))(np.zeros((2, 4), "float32")), "input_shape"),
    (lambda: MADE(3, (8,), context_size=2)(np.zeros((2, 3), "float32")), "context=None"),
    (lambda: IAF(3, 2, context_size=0), "context_size=0"),
    (lambda: IAF(3, 2, context_size=4).build((None, 5)), "input_shape"),
    (lambda: FlowPrior(3, flow="glow"), "flow='glow'"),
    (lambda: FlowPrior(1, flow="realnvp"), "latent_size=1"),
    (lambda: FlowPrior(3, num_flows=0), "num_flows=0"),
])
def test_bad_arguments_name_the_problem(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
