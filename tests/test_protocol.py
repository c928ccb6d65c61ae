"""The `LatentVariableModel` protocol: an estimator that knows only it works on every model class.

For each model class, `log_joint(batch, z) - log q` at `sample_posterior`'s
draws must equal the model's own (possibly fused) importance weights for the
same seed, and a generic IS estimator written here from the two protocol
methods must reproduce `log_prob`.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.objectives import elbo as objectives
from tfvae.flows import density
from tfvae.hierarchy import mlp
from tfvae.hierarchy import resnet
from tfvae.models import Batch
from tfvae.models import FlowDensity
from tfvae.models import VAE
from tfvae.models import cvae
from tfvae.models import hvae

SHAPE = (4, 4, 1)
RNG = np.random.default_rng(2)
X = (RNG.random((5, *SHAPE)) > 0.5).astype("float32")
GREY = (RNG.integers(0, 256, size=(5, *SHAPE)) / 255.0).astype("float32")
LABELS = np.array([0, 1, 2, 1, 0], np.int32)


def _vae(family=None, flow=None):
    likelihood = families.Bernoulli(SHAPE)
    latent = latents.LatentLayer(family or families.DiagonalGaussian(3), flow=flow)
    model = VAE(networks.MLP([8], 8), networks.MLP([8], likelihood.params_size), latent,
                likelihood, analytic_kl=flow is None, seed=0)
    model.build((None, *SHAPE))
    return model, Batch(tf.constant(X))


def _iaf_vae():
    from tfvae.flows import iaf
    return _vae(flow=iaf.IAF(3, 1, hidden_units=(8,), context_size=4, seed=0))


def _cvae():
    likelihood = families.Bernoulli(SHAPE)
    model = cvae.ConditionalVAE(networks.MLP([8], 8), networks.MLP([8], likelihood.params_size),
                                latents.LatentLayer(families.DiagonalGaussian(3)), likelihood,
                                num_classes=3, seed=0)
    model.build((None, *SHAPE))
    return model, Batch(tf.constant(X), tf.constant(LABELS))


def _hvae(stack):
    likelihood = families.Bernoulli(SHAPE)
    if stack == "mlp":
        layers = mlp.MLPStack(SHAPE, (3, 2), (8, 8), likelihood.params_size,
                              inference="bidirectional", iaf_steps=1, iaf_hidden_units=(8,),
                              iaf_context_size=4, seed=1)
    else:
        layers = resnet.ResNetStack(SHAPE, 1, num_layers=2, hidden_channels=8, latent_channels=2,
                                    inference="ladder", iaf_steps=0, seed=1)
    model = hvae.HierarchicalVAE(layers, likelihood, seed=0)
    model(X[:1])
    return model, Batch(tf.constant(X))


def _flow():
    model = FlowDensity(SHAPE, density.FlowPrior(16, flow="maf", num_flows=1, hidden_units=(8,),
                                                 seed=0), num_bits=8, seed=0)
    model.build((None, *SHAPE))
    return model, Batch(tf.constant(GREY))


MODELS = {"vae": _vae, "vae_fullcov": lambda: _vae(families.FullCovarianceGaussian(3)),
          "vae_iaf": _iaf_vae, "cvae": _cvae, "hvae_mlp_iaf": lambda: _hvae("mlp"),
          "hvae_resnet": lambda: _hvae("resnet"), "flow_density": _flow}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_protocol_weights_equal_the_models_own(name):
    model, batch = MODELS[name]()
    seed = tf.constant([4, 2])
    z, log_q = model.sample_posterior(batch, 3, seed)
    assert z.shape[:2] == (3, 5) and log_q.shape == (3, 5)
    generic = model.log_joint(batch, z) - log_q
    np.testing.assert_allclose(generic, model.log_weights_fn(batch)(3, seed), rtol=1e-4,
                               atol=1e-3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_generic_importance_sampling_reproduces_log_prob(name):
    """IS from `sample_posterior` and `log_joint` alone, with log_prob's own seeds."""
    from tfvae import streams
    model, batch = MODELS[name]()
    seed, k, chunk = tf.constant([7, 1]), 6, 3
    stream = streams.fold(seed, "importance")
    chunks = []
    for c in range(k // chunk):
        z, log_q = model.sample_posterior(
            batch, chunk, tf.random.experimental.stateless_fold_in(stream, c))
        chunks.append(model.log_joint(batch, z) - log_q)
    generic = objectives.log_mean_exp(tf.concat(chunks, 0))
    own = model.log_prob(batch.x, batch.context, num_samples=k, chunk_size=chunk, seed=seed)
    np.testing.assert_allclose(generic, own, rtol=1e-4, atol=1e-3)
