"""PixelCNN: raster-order causality through the Jacobian, a normalized autoregressive p(x|c)."""

import itertools
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import layer_contract
from tfvae import families
from tfvae import latents
from tfvae import networks
from tfvae import pixelcnn
from tfvae.models import pixel_vae


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
        pixelcnn=net, free_bits=0.5, free_bits_groups=2, seed=0)
    model.build((None, 8, 8, 1))
    return model


def test_pixel_vae_samples_in_graph_and_round_trips(tmp_path):
    model = _tiny_pixel_vae()
    x = (np.random.default_rng(3).random((3, 8, 8, 1)) < 0.5).astype("float32")
    samples = tf.function(lambda s: model.sample(4, seed=s))(tf.constant([1, 2])).numpy()
    assert samples.shape == (4, 8, 8, 1) and set(np.unique(samples)) <= {0.0, 1.0}
    np.testing.assert_array_equal(samples, model.sample(4, seed=[1, 2]).numpy())
    elbo = model.elbo(x, seed=[1, 2]).numpy()
    assert np.all(model.log_prob(x, num_samples=50, seed=[1, 2]).numpy() > elbo.mean() - 50)
    path = os.path.join(tmp_path, "pixel_vae.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.elbo(x, seed=[1, 2]), elbo, rtol=1e-6)
    with pytest.raises(ValueError, match="Bernoulli"):
        pixel_vae.PixelVAE(model.encoder, model.decoder, model.latent,
                           families.Gaussian((8, 8, 1)), pixelcnn=model.pixelcnn)
