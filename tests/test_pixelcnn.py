"""PixelCNN: raster-order causality through the Jacobian, a normalized autoregressive p(x|c)."""

import itertools
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import layer_contract
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.nn import pixelcnn
from tfvae.models import pixel_vae
from tfvae.objectives.elbo import ELBO


def test_masks_by_hand():
    a = pixelcnn.causal_mask(3, "A")[..., 0, 0]
    b = pixelcnn.causal_mask(3, "B")[..., 0, 0]
    np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="mask_type"):
        pixelcnn.MaskedConv2D(4, 3, "C")
    with pytest.raises(ValueError, match="kernel_size"):
        pixelcnn.MaskedConv2D(4, 4, "A")


def test_masked_conv_layer_contract():
    layer_contract.check_layer(pixelcnn.MaskedConv2D(5, 3, "A"), (2, 6, 6, 1), (2, 6, 6, 5), 2)


def _net(filters=8, num_layers=2):
    net = pixelcnn.PixelCNN(filters, num_layers, kernel_size=3, first_kernel_size=3)
    net.build([(None, 6, 6, 1), (None, 6, 6, 3)])
    # Random non-zero biases and weights everywhere, so no dependence vanishes by accident.
    rng = np.random.default_rng(0)
    for weight in net.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape))
    for layer in net._head:      # positive biases: the head's ReLUs stay active
        layer.bias.assign(np.abs(layer.bias.numpy()) + 2.0)
    return net


def test_each_logit_depends_only_on_earlier_pixels():
    net = _net()
    rng = np.random.default_rng(1)
    images = tf.constant(rng.integers(0, 2, (4, 6, 6, 1)).astype("float32"))
    context = tf.constant(rng.normal(size=(4, 6, 6, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = tf.reshape(net([images, context]), [4, 36])
    jacobian = np.abs(tape.batch_jacobian(logits, images).numpy().reshape(4, 36, 36))
    # Output i (raster order) never depends on pixels j >= i: strictly lower triangular.
    assert np.all(jacobian[:, np.triu_indices(36)[0], np.triu_indices(36)[1]] == 0.0)
    # ... and does depend on its left and upper neighbours (the masks are not over-strict).
    for i in range(36):
        row, col = divmod(i, 6)
        if col > 0:
            assert np.all(jacobian[:, i, i - 1] > 0), i
        if row > 0:
            assert np.all(jacobian[:, i, i - 6] > 0), i


def test_window_of_rows_gives_the_full_pass_probabilities():
    net = _net()                                     # rows_above = 1 + 2 * 1 = 3: a 4-row window
    assert net.rows_above == 3
    rng = np.random.default_rng(4)
    context = tf.constant(rng.normal(size=(2, 6, 6, 3)).astype("float32"))
    dist = pixelcnn.make_autoregressive_bernoulli(net, context, (6, 6, 1))
    x = tf.constant(rng.integers(0, 2, (2, 6, 6, 1)).astype("float32"))
    full = dist.distribution_fn(x).distribution.probs_parameter().numpy()
    for row in range(6):
        np.testing.assert_allclose(dist._row_probs(x, row).numpy(), full[:, row], rtol=1e-5,
                                   atol=1e-6)


def test_autoregressive_bernoulli_is_normalized_and_samples_from_itself():
    net = pixelcnn.PixelCNN(4, 2, kernel_size=3, first_kernel_size=3)
    net.build([(None, 2, 2, 1), (None, 2, 2, 2)])
    rng = np.random.default_rng(2)
    for weight in net.weights:
        weight.assign(rng.normal(scale=0.7, size=weight.shape))
    context = tf.constant(rng.normal(size=(2, 2, 2)).astype("float32"))    # one example
    dist = pixelcnn.make_autoregressive_bernoulli(net, context, (2, 2, 1))
    images = np.array(list(itertools.product([0, 1], repeat=4)), np.float32).reshape(16, 2, 2, 1)
    probs = np.exp(dist.log_prob(images).numpy())
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)        # sums to 1 over all 2^4 images
    n = 4000
    draws = dist.sample(n, seed=[1, 2]).numpy().reshape(n, 4)
    codes = draws @ (2 ** np.arange(3, -1, -1))
    frequency = np.bincount(codes.astype(int), minlength=16) / n
    np.testing.assert_array_less(np.abs(frequency - probs), 4 * np.sqrt(probs * (1 - probs) / n) + 1e-3)
    greedy = dist.mean().numpy()                                    # deterministic
    np.testing.assert_array_equal(greedy, dist.mean().numpy())


def _tiny_pixel_vae():
    net = pixelcnn.PixelCNN(4, 2, kernel_size=3, first_kernel_size=3, name="pixelcnn")
    model = pixel_vae.PixelVAE(
        networks.MLP([16], 16), networks.ConvDecoder((8, 8, 1), (4,), 2),
        latents.LatentLayer(families.DiagonalGaussian(4)), families.Bernoulli((8, 8, 1)),
        pixelcnn=net, objective=ELBO(free_bits=0.5, free_bits_groups=2), seed=0)
    model.build((None, 8, 8, 1))
    return model


def test_pixel_vae_samples_in_graph_and_round_trips(tmp_path):
    model = _tiny_pixel_vae()
    x = (np.random.default_rng(3).random((3, 8, 8, 1)) < 0.5).astype("float32")
    samples = tf.function(lambda s: model.sample(4, seed=s))(tf.constant([1, 2])).numpy()
    assert samples.shape == (4, 8, 8, 1) and set(np.unique(samples)) <= {0.0, 1.0}
    np.testing.assert_array_equal(samples, model.sample(4, seed=[1, 2]).numpy())
    elbo = model.elbo(x, seed=[1, 2]).numpy()
    path = os.path.join(tmp_path, "pixel_vae.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.elbo(x, seed=[1, 2]), elbo, rtol=1e-6)
    with pytest.raises(ValueError, match="Bernoulli"):
        pixel_vae.PixelVAE(model.encoder, model.decoder, model.latent,
                           families.Gaussian((8, 8, 1)), pixelcnn=model.pixelcnn)


def _z_dependent_pixel_vae():
    """The tiny PixelVAE with N(0, 0.5^2) decoder and PixelCNN weights: p(x|z) varies with z."""
    model = _tiny_pixel_vae()
    rng = np.random.default_rng(0)
    for weight in model.decoder.weights + model.pixelcnn.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape))
    return model


def _bernoulli_chain_rule(model, x, z):
    """log p(x|z) = sum_i log Bernoulli(x_i; sigmoid(logit_i)) from one PixelCNN pass.

    Written here without the library's distribution: the logits of the
    images x [n, H, W, 1], teacher-forced with the context map decoder(z) of
    z [k, n, d], scored by the Bernoulli log-mass in closed form.

    Returns:
      [k, n] in float64.
    """
    k, n = z.shape[0], z.shape[1]
    context = model.decoder(tf.reshape(z, [k * n, -1]))
    images = tf.reshape(tf.broadcast_to(x, (k, *x.shape)), (k * n, *x.shape[1:]))
    logits = tf.cast(model.pixelcnn([images, context]), tf.float64)
    images = tf.cast(images, tf.float64)
    log_mass = images * tf.math.log_sigmoid(logits) + (1 - images) * tf.math.log_sigmoid(-logits)
    return tf.reshape(tf.reduce_sum(log_mass, [1, 2, 3]), [k, n]).numpy()


def test_pixel_vae_log_prob_lies_between_the_elbo_and_an_independent_marginal():
    model = _z_dependent_pixel_vae()
    x = (np.random.default_rng(3).random((3, 8, 8, 1)) < 0.5).astype("float32")
    q, p = model.encode(x), model.prior()
    # log p(x|z) of the model (teacher-forced, [k, n] for z [k, n, d]) is the chain rule.
    z = p.sample([5, 3], seed=[4, 5])
    chain_rule = _bernoulli_chain_rule(model, x, z)
    np.testing.assert_allclose(model.decode(z).log_prob(x).numpy(), chain_rule, rtol=1e-5)
    assert chain_rule.std(0).min() > 0.1, chain_rule    # the decoder uses z
    # An independent marginal: log p(x) = log E_p(z)[p(x|z)] with 20,000 prior draws (no
    # encoder involved); p(x|z) varies little over z, so its relative error is tiny.
    num_prior = 20000
    log_w = _bernoulli_chain_rule(model, x, p.sample([num_prior, 3], seed=[6, 7]))
    marginal = np.logaddexp.reduce(log_w, 0) - math.log(num_prior)
    w = np.exp(log_w - log_w.max(0))
    assert np.all(w.std(0) / w.mean(0) / math.sqrt(num_prior) < 0.01)
    # The ELBO with the closed-form KL, by 2000 draws from q, with its standard error.
    draws = 2000
    own_elbo = _bernoulli_chain_rule(model, x, q.sample(draws, seed=[8, 9])) - (
        q.kl_divergence(p).numpy())
    elbo_stderr = own_elbo.std(0) / math.sqrt(draws)
    elbo = model.elbo(x, num_samples=draws, seed=[1, 2]).numpy()
    np.testing.assert_array_less(np.abs(elbo - own_elbo.mean(0)), 4 * math.sqrt(2) * elbo_stderr)
    # The importance-sampled estimate (K = 1000, q as proposal): above the ELBO by more than
    # its error (it is a tighter bound: ~1-4 nats here), and not above log p(x) beyond the
    # Monte-Carlo error of the mean weight (it is a stochastic lower bound).
    k = 1000
    estimate = model.log_prob(x, num_samples=k, seed=[1, 2]).numpy()
    z = q.sample(k, seed=[10, 11])
    log_w = _bernoulli_chain_rule(model, x, z) + (p.log_prob(z) - q.log_prob(z)).numpy()
    w = np.exp(log_w - log_w.max(0))
    is_stderr = w.std(0) / w.mean(0) / math.sqrt(k)          # delta method on log mean w
    assert np.all(estimate > elbo + 0.5 + 4 * elbo_stderr), (estimate, elbo)
    np.testing.assert_array_less(estimate, marginal + 4 * is_stderr + 0.02)
    # The same estimator written out here, with other draws, agrees within that error.
    own_estimate = np.logaddexp.reduce(log_w, 0) - math.log(k)
    np.testing.assert_array_less(np.abs(estimate - own_estimate), 4 * math.sqrt(2) * is_stderr)
