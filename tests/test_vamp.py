"""The VampPrior: its log-density is the explicit mixture of posteriors at the pseudo-inputs."""

import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

import zoo
from tests import layer_contract
from tfvae.data import datasets as data_lib
from tfvae.distributions import vamp
from tfvae.models import vamp_vae
from tfvae.objectives.elbo import ELBO

K, LATENT = 7, 3


def _model():
    entry = zoo.load("vamp_vae")
    config = entry.Config(dataset="fashion_mnist", latent_size=LATENT, hidden_units=(16, 16),
                          num_pseudo_inputs=K)
    model = entry.build_model(config, data_lib.info("fashion_mnist"))
    x = (np.random.default_rng(1).random((16, 28, 28, 1)) > 0.5).astype(np.float32)
    model(x[:1])
    return model, x


def test_prior_log_density_is_the_explicit_mixture():
    model, _ = _model()
    u = model.vamp_prior.pseudo_inputs().numpy()
    assert u.shape == (K, 28, 28, 1) and 0 < u.min() and u.max() < 1
    summary = model.posterior_summary(u)
    loc, scale = summary["loc"].numpy().astype(np.float64), summary["scale"].numpy()
    z = np.random.default_rng(2).normal(size=(5, 4, LATENT)).astype(np.float32)
    # log p(z) = log (1/K) sum_k prod_d N(z_d; loc_kd, scale_kd), by hand.
    log_components = scipy.stats.norm.logpdf(z[..., None, :], loc, scale).sum(-1)   # [5, 4, K]
    by_hand = scipy.special.logsumexp(log_components, axis=-1) - np.log(K)
    np.testing.assert_allclose(model.prior().log_prob(z), by_hand, rtol=1e-5, atol=1e-5)
    assert model.prior().sample(6, seed=tf.constant([1, 2])).shape == (6, LATENT)


@pytest.mark.parametrize("scale", [1e-3, 0.1, 3.0])
def test_matmul_log_density_equals_the_broadcast_mixture(scale):
    """DiagonalGaussianMixture.log_prob (and its gradient) = MixtureSameFamily's, tiny scales too."""
    rng = np.random.default_rng(3)
    loc = tf.constant(rng.normal(size=(K, LATENT)) * 3, tf.float32)
    scales = tf.constant(scale * np.exp(rng.normal(size=(K, LATENT)) * 0.3), tf.float32)
    # Points near the components (where the expansion cancels most) and far away.
    z = tf.constant(np.concatenate([loc.numpy()[None] + scale * rng.normal(size=(2, K, LATENT)),
                                    rng.normal(size=(2, K, LATENT)) * 5]), tf.float32)

    def log_probs(mixture_class):
        with tf.GradientTape() as tape:
            tape.watch([loc, scales])
            posterior = vamp.tfd.MultivariateNormalDiag(loc, scales)
            mixture = vamp.tfd.Categorical(logits=tf.zeros([K]))
            value = mixture_class(mixture, posterior).log_prob(z)
            total = tf.reduce_sum(value)
        return value, tape.gradient(total, [loc, scales])

    fast, fast_grads = log_probs(vamp.DiagonalGaussianMixture)
    slow, slow_grads = log_probs(vamp.tfd.MixtureSameFamily)
    assert fast.shape == z.shape[:-1]
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-4)
    for a, b in zip(fast_grads, slow_grads):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
    assert isinstance(vamp.VampPrior.distribution(vamp.tfd.MultivariateNormalDiag(loc, scales)),
                      vamp.DiagonalGaussianMixture)


def test_training_moves_the_pseudo_inputs():
    model, x = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    before = model.vamp_prior.logits.numpy().copy()
    model.fit(x, epochs=1, batch_size=16, verbose=0)
    assert np.abs(model.vamp_prior.logits.numpy() - before).max() > 1e-3


def test_vamp_prior_layer_contract():
    layer = vamp.VampPrior(4, (3, 2, 1), seed=0)
    out = layer_contract.check_layer(layer, (2, 5), (4, 3, 2, 1), expected_trainable_weights=1)
    assert 0 < out.min() and out.max() < 1


def test_vamp_arguments_are_validated():
    model, _ = _model()
    parts = (model.encoder, model.decoder, model.latent, model.likelihood)
    with pytest.raises(ValueError, match="num_components=0"):
        vamp.VampPrior(0, (28, 28, 1))
    with pytest.raises(ValueError, match=r"ELBO\(analytic_kl=True\) needs a closed-form KL"):
        vamp_vae.VampVAE(*parts, vamp_prior=model.vamp_prior, objective=ELBO(analytic_kl=True))
    with pytest.raises(ValueError, match="VampPrior over images of shape"):
        vamp_vae.VampVAE(*parts, vamp_prior=vamp.VampPrior(3, (4, 4, 1)))
    with pytest.raises(ValueError, match="prior='maf'"):
        zoo.load("vamp_vae").Config(prior="maf")
