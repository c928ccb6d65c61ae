"""Every layer through the shared contract (tests/layer_contract.py)."""

import numpy as np
import pytest

from tests.layer_contract import check_layer
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.distributions import priors


def test_mlp():
    layer = networks.MLP([16, 8], 6, activation="tanh", output_activation="relu")
    y = check_layer(layer, (4, 3, 5), (4, 6), expected_trainable_weights=6)
    assert np.all(y >= 0)


def test_mlp_reshaped_output():
    check_layer(networks.MLP([], 12, output_shape_=(2, 2, 3)), (4, 7), (4, 2, 2, 3), 2)


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_conv_encoder_and_decoder(image_shape):
    check_layer(networks.ConvEncoder([8, 16], 10), (2, *image_shape), (2, 10), 6)
    check_layer(networks.ConvDecoder(image_shape, [16, 8], 2 * image_shape[-1]),
                (2, 5), (2, *image_shape[:2], 2 * image_shape[-1]), 8)


def test_latent_layer_and_prior():
    layer = latents.LatentLayer(families.FullCovarianceGaussian(3))
    check_layer(layer, (4, 9), (4, 3 + 3 + 3), expected_trainable_weights=2)
    q = layer.posterior(np.ones((4, 9), "float32"))
    assert q.event_shape == (3,) and q.batch_shape == (4,)
    prior = priors.StandardNormal(3)
    check_layer(prior, (5, 3), (5,), expected_trainable_weights=0)
    z = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    log_p = prior(z).numpy()
    np.testing.assert_allclose(log_p, (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1), rtol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda: networks.MLP([4, -1], 3), "hidden_units"),
    (lambda: networks.MLP([4], 0), "output_units"),
    (lambda: networks.MLP([4], 3, activation="nope"), "nope"),
    (lambda: networks.ConvDecoder((30, 30, 1), [8, 8, 8], 1), "divisible"),
    (lambda: latents.LatentLayer(families.Bernoulli((3,))), "posterior"),
    (lambda: latents.LatentLayer(families.DiagonalGaussian(3), priors.StandardNormal(4)),
     "latent size"),
    (lambda: priors.StandardNormal(0), "latent_size"),
])
def test_bad_arguments_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()
