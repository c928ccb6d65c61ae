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
from tfvae.objectives.elbo import ELBO

SHAPE = (4, 4, 1)
RNG = np.random.default_rng(2)
X = (RNG.random((5, *SHAPE)) > 0.5).astype("float32")
GREY = (RNG.integers(0, 256, size=(5, *SHAPE)) / 255.0).astype("float32")
LABELS = np.array([0, 1, 2, 1, 0], np.int32)


def _vae(family=None, flow=None):
    likelihood = families.Bernoulli(SHAPE)
    latent = latents.LatentLayer(family or families.DiagonalGaussian(3), flow=flow)
    model = VAE(networks.MLP([8], 8), networks.MLP([8], likelihood.params_size), latent,
                likelihood, objective=ELBO(analytic_kl=flow is None), seed=0)
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


def test_m2_protocol_over_label_and_latent_converges_to_its_exact_label_sum():
    """M2's latents are (y, z): IS from `sample_posterior`/`log_joint` alone (y drawn from
    q(y|x)) converges to `log_prob`, which sums y out exactly (K z-samples per class)."""
    from tfvae.models import m2
    likelihood = families.Bernoulli(SHAPE)
    model = m2.M2(networks.MLP([8], 8), networks.MLP([8], likelihood.params_size),
                  latents.LatentLayer(families.DiagonalGaussian(2)), likelihood,
                  classifier=networks.MLP([8], 3), num_classes=3, seed=0)
    model.build((None, *SHAPE))
    batch = Batch(tf.constant(X))
    z, log_q = model.sample_posterior(batch, 4000, tf.constant([3, 1]))
    assert z.shape == (4000, 5, 3 + 2)
    log_w = (model.log_joint(batch, z) - log_q).numpy().astype(np.float64)   # [S, B]
    generic = objectives.log_mean_exp(tf.constant(log_w)).numpy()
    # Delta-method standard error of log mean w.
    w = np.exp(log_w - log_w.max(0))
    stderr = w.std(0) / w.mean(0) / np.sqrt(len(w))
    exact_sum = model.log_prob(X, num_samples=4000, seed=tf.constant([5, 5])).numpy()
    assert np.all(np.abs(generic - exact_sum) < 4 * stderr + 0.02), (generic, exact_sum, stderr)


def test_every_model_skips_steps_over_max_grad_norm_and_logs_the_norm():
    """The base's guarded step: a plain VAE (not only the hierarchy) skips and counts a step
    whose gradient norm exceeds max_grad_norm, keeps its weights, and logs grad_norm."""
    likelihood = families.Bernoulli(SHAPE)
    for threshold, skipped in ((1e-6, 1.0), (0.0, 0.0)):
        model = VAE(networks.MLP([8], 8), networks.MLP([8], likelihood.params_size),
                    latents.LatentLayer(families.DiagonalGaussian(3)), likelihood,
                    max_grad_norm=threshold, seed=0)
        model.build((None, *SHAPE))
        model.compile(optimizer="adam")
        before = [w.numpy() for w in model.trainable_weights]
        logs = model.fit(X, epochs=1, batch_size=5, verbose=0).history
        assert logs["skipped_steps"][-1] == skipped
        changed = any(not np.array_equal(b, w.numpy())
                      for b, w in zip(before, model.trainable_weights))
        assert changed == (not skipped)
        if not skipped:
            assert logs["grad_norm"][-1] > 0
