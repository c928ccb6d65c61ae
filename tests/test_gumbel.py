"""Gumbel-softmax latents: relaxed samples -> categorical as tau -> 0, exact IS log p(x)."""

import itertools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests import layer_contract
from tfvae.distributions import discrete_latents
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.models import gumbel_vae

tfd = tfp.distributions

LOGITS = np.log(np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]], np.float32))
NUM_DRAWS = 20000


def _relaxed_draws(temperature):
    family = layer_contract.check_family(discrete_latents.RelaxedCategorical(2, 4),
                                         LOGITS.reshape(1, -1))
    relaxed = discrete_latents.RelaxedCategorical(2, 4).relaxed(LOGITS.reshape(-1), temperature)
    assert family.event_shape == (2, 4) and relaxed.event_shape == (2, 4)
    return np.exp(relaxed.sample(NUM_DRAWS, seed=[1, 2]).numpy())     # [n, 2, 4] on the simplex


def test_gumbel_softmax_samples_approach_the_categorical_as_temperature_goes_to_zero():
    probs = np.exp(LOGITS)
    stderr = np.sqrt(probs * (1 - probs) / NUM_DRAWS)
    max_coordinate, error = [], []
    for temperature in (2.0, 0.5, 0.05, 0.002):
        y = _relaxed_draws(temperature)
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
        max_coordinate.append(y.max(-1).mean())
        error.append(np.abs(y.mean(0) - probs).max())
    # As tau -> 0 the samples become one-hot (1 - E[max] = O(tau)) and their mean is the
    # categorical's probabilities within standard errors.
    assert max_coordinate[-1] > 0.998, max_coordinate
    np.testing.assert_array_less(np.abs(_relaxed_draws(0.002).mean(0) - probs), 4 * stderr)
    # At high temperature they are neither (the limit is not a tautology of the test).
    assert max_coordinate[0] < 0.8 and error[0] > 10 * stderr.max(), (max_coordinate, error)
    assert max_coordinate == sorted(max_coordinate)


def test_exact_categorical_is_gumbel_max_and_prefix_consistent():
    q = discrete_latents.RelaxedCategorical(2, 4).make(LOGITS.reshape(-1))
    draws = q.sample(NUM_DRAWS, seed=[3, 4]).numpy()                   # [n, 2, 4] one-hot
    assert set(np.unique(draws)) == {0.0, 1.0} and np.all(draws.sum(-1) == 1)
    probs = np.exp(LOGITS)
    np.testing.assert_array_less(np.abs(draws.mean(0) - probs),
                                 4 * np.sqrt(probs * (1 - probs) / NUM_DRAWS))
    np.testing.assert_array_equal(q.sample(7, seed=[3, 4]).numpy(), draws[:7])
    np.testing.assert_allclose(q.log_prob(draws[:3]).numpy(),
                               [LOGITS[range(2), d.argmax(-1)].sum() for d in draws[:3]], rtol=1e-6)


def test_annealed_temperature_and_straight_through():
    values = [float(discrete_latents.annealed_temperature(s, 1.0, 0.5, 1e-3))
              for s in (0, 100, 10000)]
    np.testing.assert_allclose(values, [1.0, math.exp(-0.1), 0.5], rtol=1e-6)
    soft = tf.constant([[0.2, 0.5, 0.3]])
    with tf.GradientTape() as tape:
        tape.watch(soft)
        hard = discrete_latents.straight_through(soft)
        loss = tf.reduce_sum(hard * [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(hard.numpy(), [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(tape.gradient(loss, soft).numpy(), [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="num_categories"):
        discrete_latents.RelaxedCategorical(3, 1)


def _tiny_model(kl_estimator="discrete", straight_through=False):
    num_latents, num_categories = 2, 3
    model = gumbel_vae.GumbelVAE(
        networks.MLP([8], 8), networks.MLP([8], 4),
        latents.LatentLayer(discrete_latents.RelaxedCategorical(num_latents, num_categories),
                            prior=discrete_latents.UniformCategoricalPrior(num_latents,
                                                                           num_categories)),
        families.Bernoulli((4, 1, 1)), kl_estimator=kl_estimator,
        straight_through=straight_through, temperature=2.0, min_temperature=0.5,
        anneal_rate=0.1, seed=0)
    model.build((None, 4, 1, 1))
    return model


def test_log_prob_is_the_exact_categorical_marginal():
    model = _tiny_model()
    x = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], np.float32).reshape(3, 4, 1, 1)
    # log p(x) = log sum over all 3^2 one-hot codes z of p(z) p(x|z), by enumeration.
    codes = np.array([np.eye(3)[list(c)] for c in itertools.product(range(3), repeat=2)],
                     np.float32)                                        # [9, 2, 3]
    log_joint = model.decode(codes[:, None]).log_prob(x).numpy() + 2 * math.log(1 / 3)  # [9, 3]
    exact = np.logaddexp.reduce(log_joint, axis=0)
    num_samples = 3000
    estimate = model.log_prob(x, num_samples=num_samples, seed=[1, 2]).numpy()
    # The weights w = p(x, z) / q(z|x), z ~ q, have mean p(x) and E[w^2] = sum_z p(x, z)^2 / q(z):
    # the estimate's relative standard error is sqrt(E[w^2] / p(x)^2 - 1) / sqrt(K).
    log_q = model.encode(x).log_prob(codes[:, None]).numpy()                 # [9, 3]
    second_moment = np.exp(np.logaddexp.reduce(2 * log_joint - log_q, axis=0) - 2 * exact)
    stderr = np.sqrt(second_moment - 1) / math.sqrt(num_samples)
    np.testing.assert_array_less(np.abs(estimate - exact), 4 * stderr)
    # The ELBO of the discrete model is below it (strictly, as q is not the posterior).
    assert np.all(model.elbo(x, num_samples=3000, seed=[1, 2]).numpy() < exact)


@pytest.mark.parametrize("kl_estimator", ["discrete", "relaxed"])
def test_training_objective_kl_and_temperature(kl_estimator):
    model = _tiny_model(kl_estimator, straight_through=kl_estimator == "relaxed")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = np.array([[1, 0, 1, 1]] * 4, np.float32).reshape(4, 4, 1, 1)
    out = model.objective(tf.constant(x), tf.constant([1, 2]))
    assert float(out["temperature"]) == 2.0
    probs = tf.nn.softmax(tf.reshape(model.latent(model.encoder(x)), [4, 2, 3])).numpy()
    discrete_kl = (probs * np.log(probs * 3)).sum((-1, -2)).mean()
    if kl_estimator == "discrete":
        np.testing.assert_allclose(float(out["rate"]), discrete_kl, rtol=1e-5)
    else:   # a one-sample density ratio: finite, and not the closed form
        assert np.isfinite(float(out["rate"])) and abs(float(out["rate"]) - discrete_kl) > 1e-4
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(4).repeat(10), verbose=0)
    np.testing.assert_allclose(float(model.current_temperature()), 2.0 * math.exp(-1.0),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="kl_estimator"):
        gumbel_vae.GumbelVAE(model.encoder, model.decoder, model.latent, model.likelihood,
                             kl_estimator="exact")


# Strongly non-uniform logits of the tiny model's 2 x 3 posterior (set through its head).
FIXED_LOGITS = np.log(np.array([[0.75, 0.2, 0.05], [0.05, 0.15, 0.8]], np.float32))


def _fixed_posterior_model(kl_estimator, straight_through=False):
    """The tiny model with q(z|x) = FIXED_LOGITS for every x (zero head kernel)."""
    model = _tiny_model(kl_estimator, straight_through=straight_through)
    head = model.latent._head
    head.kernel.assign(tf.zeros_like(head.kernel))
    head.bias.assign(FIXED_LOGITS.reshape(-1))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))   # step 0: tau = tau_0 = 2
    return model


def _spy_decoder_inputs(monkeypatch, model):
    """Records every z passed to `model.decode`; returns (the list, the original decode)."""
    seen, decode = [], model.decode
    monkeypatch.setattr(model, "decode", lambda z: (seen.append(tf.identity(z)), decode(z))[1])
    return seen, decode


def _concrete_log_ratio(y, logits, temperature):
    """log q_tau(y) - log p_tau(y) of Concrete densities, summed over the N variables.

    Written from the density of Maddison et al. (2017), eq. (3), in float64:
    log p(y) = log (K-1)! + (K-1) log tau + sum_k (l_k - (tau + 1) log y_k)
    - K logsumexp_k(l_k - tau log y_k); the uniform prior has l = 0 and the
    terms not depending on l cancel in the ratio.
    """
    y, logits = np.asarray(y, np.float64), np.asarray(logits, np.float64)
    k = y.shape[-1]
    log_y = np.log(y)
    ratio = (logits.sum(-1)
             - k * np.logaddexp.reduce(logits - temperature * log_y, axis=-1)
             + k * np.logaddexp.reduce(-temperature * log_y, axis=-1))
    return ratio.sum(-1)


def test_relaxed_kl_is_the_concrete_log_density_ratio_at_the_decoded_sample(monkeypatch):
    model = _fixed_posterior_model("relaxed")
    seen, _ = _spy_decoder_inputs(monkeypatch, model)
    x = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]] * 4,
                 np.float32).reshape(16, 4, 1, 1)
    out = model.objective(tf.constant(x), tf.constant([5, 6]))
    tau = float(out["temperature"])
    assert tau == 2.0 and len(seen) == 1
    y = seen[0].numpy()                                                   # [16, 2, 3]
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    # TFP's Concrete densities on the simplex at the sample the decoder saw.
    logits = tf.constant(np.broadcast_to(FIXED_LOGITS, y.shape), tf.float64)
    q = tfd.RelaxedOneHotCategorical(tf.constant(tau, tf.float64), logits=logits)
    p = tfd.RelaxedOneHotCategorical(tf.constant(tau, tf.float64), logits=tf.zeros_like(logits))
    y64 = tf.constant(y, tf.float64)
    tfp_ratio = tf.reduce_sum(q.log_prob(y64) - p.log_prob(y64), -1).numpy()   # [16]
    np.testing.assert_allclose(tfp_ratio, _concrete_log_ratio(y, logits.numpy(), tau),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(out["rate"]), tfp_ratio.mean(), rtol=1e-4, atol=1e-4)
    # The comparison has power: the ratio is far from 0 (a sign flip would be caught).
    assert tfp_ratio.mean() > 0.3, tfp_ratio.mean()
    np.testing.assert_allclose(float(out["elbo"]), -(float(out["distortion"]) + tfp_ratio.mean()),
                               rtol=1e-4)


def test_relaxed_kl_monte_carlo_mean_is_the_relaxed_kl_divergence():
    model = _fixed_posterior_model("relaxed")
    batch = 4096
    x = np.tile(np.array([1, 0, 1, 1], np.float32), (batch, 1)).reshape(batch, 4, 1, 1)
    out = model.objective(tf.constant(x), tf.constant([7, 8]))
    tau = float(out["temperature"])
    # A high-sample estimate of KL(q_tau || p_tau) >= 0 from TFP's own sampler and densities.
    q = tfd.RelaxedOneHotCategorical(tf.constant(tau, tf.float64),
                                     logits=tf.constant(FIXED_LOGITS, tf.float64))
    p = tfd.RelaxedOneHotCategorical(tf.constant(tau, tf.float64),
                                     logits=tf.zeros([2, 3], tf.float64))
    y = q.sample(200000, seed=[9, 10])
    ratios = tf.reduce_sum(q.log_prob(y) - p.log_prob(y), -1).numpy()
    reference, spread = ratios.mean(), ratios.std()
    stderr = spread * math.sqrt(1 / batch + 1 / ratios.size)
    assert reference > 20 * spread / math.sqrt(ratios.size) and reference > 0.3, reference
    assert float(out["rate"]) >= 0
    assert abs(float(out["rate"]) - reference) < 4 * stderr, (float(out["rate"]), reference, stderr)


def test_straight_through_decodes_one_hot_with_the_relaxed_sample_gradient(monkeypatch):
    model = _tiny_model("discrete", straight_through=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    seen, decode = _spy_decoder_inputs(monkeypatch, model)
    x = tf.constant(np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]],
                             np.float32).reshape(3, 4, 1, 1))
    seed = tf.constant([11, 12])
    variables = model.encoder.trainable_variables + model.latent.trainable_variables
    with tf.GradientTape() as tape:
        out = model.objective(x, seed)
    gradients = tape.gradient(out["distortion"], variables)
    # Forward: the decoder sees exactly one-hot codes.
    hard = seen[0].numpy()                                                # [3, 2, 3]
    assert set(np.unique(hard)) == {0.0, 1.0} and np.all(hard.sum(-1) == 1)
    # The relaxed sample y of the same seed; its argmax is the decoded code.
    tau = float(out["temperature"])
    with tf.GradientTape() as relaxed_tape:
        params = model.latent(model.encoder(x))
        y = tf.exp(model.latent.posterior_family.relaxed(params, tau).sample(seed=seed))
    np.testing.assert_array_equal(hard, np.eye(3, dtype=np.float32)[y.numpy().argmax(-1)])
    # Backward: d distortion / d theta = (d distortion / d z at z = hard) . dy / d theta.
    z = tf.constant(hard)
    with tf.GradientTape() as decoder_tape:
        decoder_tape.watch(z)
        distortion = -tf.reduce_mean(decode(z).log_prob(x))
    cotangent = decoder_tape.gradient(distortion, z)
    expected = relaxed_tape.gradient(y, variables, output_gradients=cotangent)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in expected) > 1e-3   # not trivially zero
    for got, want, variable in zip(gradients, expected, variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=variable.path)
    # The relaxed path (no straight-through) evaluates the decoder at y: another gradient.
    with tf.GradientTape() as soft_tape:
        params = model.latent(model.encoder(x))
        y = tf.exp(model.latent.posterior_family.relaxed(params, tau).sample(seed=seed))
        soft_distortion = -tf.reduce_mean(decode(y).log_prob(x))
    soft = soft_tape.gradient(soft_distortion, variables)
    assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(soft, expected)) > 1e-4
