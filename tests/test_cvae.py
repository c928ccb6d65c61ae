"""ConditionalVAE: the linear-Gaussian oracle with a label, class-conditional sampling in graph."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import linear_gaussian as lg
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.models import cvae
from tfvae.objectives.elbo import ELBO

NUM_CLASSES = 3


def conditional_problem(seed=0):
    """x = W z + B e_y + b + sigma * noise; returns (W, B, b, x [8, D], y [8])."""
    weight, bias, _ = lg.problem(seed)
    rng = np.random.default_rng(seed + 1)
    label_weight = 2.0 * rng.normal(size=(lg.X_DIM, NUM_CLASSES))
    y = np.arange(8) % NUM_CLASSES
    z = rng.normal(size=(8, lg.Z_DIM))
    x = z @ weight.T + label_weight[:, y].T + bias + lg.SIGMA * rng.normal(size=(8, lg.X_DIM))
    return weight, label_weight, bias, x, y


def exact_conditional_model(weight, label_weight, bias, analytic_kl, family=None):
    """A CVAE whose q(z|x, y) is the exact posterior of the conditional linear-Gaussian model.

    Encoder: identity on x; latent head on [x, e_y]: mu = A (x - b - B e_y).
    """
    family = family or families.FullCovarianceGaussian(lg.Z_DIM)
    model = cvae.ConditionalVAE(
        networks.MLP([], lg.X_DIM), networks.MLP([], lg.X_DIM),
        latents.LatentLayer(family), families.Gaussian((lg.X_DIM, 1, 1), scale=lg.SIGMA),
        num_classes=NUM_CLASSES, objective=ELBO(analytic_kl=analytic_kl), seed=0)
    model.build((None, lg.X_DIM, 1, 1))
    set_exact_weights(model, weight, label_weight, bias, family)
    return model


def set_exact_weights(model, weight, label_weight, bias, family):
    a, c, scale_tril = lg.exact_posterior(weight, bias)
    model.encoder._out.kernel.assign(np.eye(lg.X_DIM))
    model.encoder._out.bias.assign(np.zeros(lg.X_DIM))
    kernel, head_bias = lg.head_values(a, c, scale_tril)
    kernel = kernel[:, :family.params_size]
    label_rows = np.zeros((NUM_CLASSES, family.params_size))
    label_rows[:, :lg.Z_DIM] = -(a @ label_weight).T            # mu shifts by -A B e_y
    model.latent._head.kernel.assign(np.concatenate([kernel, label_rows]))
    model.latent._head.bias.assign(head_bias[:family.params_size])
    model.decoder._out.kernel.assign(np.concatenate([weight.T, label_weight.T]))
    model.decoder._out.bias.assign(bias)


def exact_log_prob_given_label(weight, label_weight, bias, x, y):
    return lg.exact_log_prob(weight, bias + label_weight[:, y].T, x)


@pytest.mark.parametrize("analytic_kl", [True, False])
def test_exact_posterior_gives_the_exact_conditional_likelihood(analytic_kl):
    weight, label_weight, bias, x, y = conditional_problem()
    model = exact_conditional_model(weight, label_weight, bias, analytic_kl)
    images = x[:, :, None, None].astype("float32")
    expected = exact_log_prob_given_label(weight, label_weight, bias, x, y)
    # With the exact posterior every importance weight is p(x|y): IS is exact for any K.
    log_prob = model.log_prob(images, y, num_samples=7, seed=[1, 2]).numpy()
    np.testing.assert_allclose(log_prob, expected, rtol=1e-4, atol=1e-4)
    # The ELBO is tight on average (analytic KL: exact up to the Monte-Carlo log-likelihood).
    elbo = model.elbo({"image": images, "label": y}, num_samples=4000, seed=[3, 4]).numpy()
    np.testing.assert_allclose(elbo, expected, atol=0.1)
    # A wrong label gives a different (lower on average) likelihood: y reaches both networks.
    wrong = model.log_prob(images, (y + 1) % NUM_CLASSES, num_samples=7, seed=[1, 2]).numpy()
    assert np.mean(wrong) < np.mean(expected) - 1.0


def test_class_conditional_sampling_in_graph_uses_the_labels():
    weight, label_weight, bias, _, _ = conditional_problem()
    model = exact_conditional_model(weight, label_weight, bias, analytic_kl=True)
    labels = tf.constant([0, 1, 2, 2], tf.int32)
    sample = tf.function(lambda y, s: model.sample(y, seed=s))
    images = sample(labels, tf.constant([5, 6])).numpy().reshape(4, lg.X_DIM)
    z = model.prior().sample(4, seed=model.eval_seed([5, 6])).numpy()
    expected = z @ weight.T + label_weight[:, [0, 1, 2, 2]].T + bias
    np.testing.assert_allclose(images, expected, rtol=1e-5, atol=1e-5)
    # A scalar gives a grid cycling through the classes.
    assert model.sample(5, seed=[5, 6]).shape == (5, lg.X_DIM, 1, 1)


def test_labels_are_validated_and_required():
    weight, label_weight, bias, x, y = conditional_problem()
    model = exact_conditional_model(weight, label_weight, bias, analytic_kl=True)
    images = x[:, :, None, None].astype("float32")
    with pytest.raises(ValueError, match="labels"):
        model.elbo(images, y + NUM_CLASSES)
    with pytest.raises(ValueError, match="label"):
        model.elbo({"image": images})
    with pytest.raises(ValueError, match="num_classes"):
        cvae.ConditionalVAE(networks.MLP([], 2), networks.MLP([], 2),
                            latents.LatentLayer(families.DiagonalGaussian(2)),
                            families.Bernoulli((2, 1, 1)), num_classes=1)


def test_keras_round_trip_keeps_the_conditional_model(tmp_path):
    weight, label_weight, bias, x, y = conditional_problem()
    model = exact_conditional_model(weight, label_weight, bias, analytic_kl=True)
    images = x[:, :, None, None].astype("float32")
    path = os.path.join(tmp_path, "cvae.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.num_classes == NUM_CLASSES
    np.testing.assert_allclose(loaded.log_prob(images, y, num_samples=3, seed=[1, 2]),
                               model.log_prob(images, y, num_samples=3, seed=[1, 2]), rtol=1e-6)
    assert [name for name, _, _ in loaded.serving_endpoints()] == [
        "encode", "decode", "sample", "elbo", "log_prob", "sample_seeded", "elbo_seeded",
        "log_prob_seeded"]
    assert math.isfinite(float(tf.reduce_mean(loaded(({"image": images, "label": y})))))
