"""The VAE model: serialization, the NaN guard, warm-up, input validation."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae.training import callbacks
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.models import VAE
from tfvae.objectives.elbo import ELBO

SHAPE = (6, 6, 1)


def _model(posterior=None, **kwargs):
    """The small VAE; `objective=ELBO(...)` etc. in kwargs go to `VAE`."""
    likelihood = families.Bernoulli(SHAPE)
    return VAE(networks.MLP([16], 16, output_activation="relu"),
               networks.MLP([16], likelihood.params_size),
               latents.LatentLayer(posterior or families.DiagonalGaussian(4)), likelihood,
               seed=3, **kwargs)


def _plain(config):
    """JSON-normalized config (tuples and lists compare equal)."""
    return json.loads(json.dumps(config))


def _data(n=64, seed=0):
    return (np.random.default_rng(seed).random((n, *SHAPE)) > 0.5).astype("float32")


@pytest.mark.parametrize("posterior, groups", [(families.DiagonalGaussian(4), 2),
                                               (families.FullCovarianceGaussian(4), 1)])
def test_keras_file_round_trip_gives_the_same_outputs(tmp_path, posterior, groups):
    model = _model(posterior, objective=ELBO(free_bits=0.5, free_bits_groups=groups, beta=2.0,
                                             kl_warmup_steps=7))
    x = _data(8)
    model(x)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, epochs=1, batch_size=4, verbose=0)
    path = os.path.join(tmp_path, "vae.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert _plain(loaded.get_config()) == _plain(model.get_config())
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    np.testing.assert_allclose(loaded.elbo(x, seed=(1, 1)), model.elbo(x, seed=(1, 1)), rtol=1e-6)
    np.testing.assert_allclose(loaded.log_prob(x, 30, seed=(2, 2)),
                               model.log_prob(x, 30, seed=(2, 2)), rtol=1e-6)
    clone = VAE.from_config(model.get_config())
    assert _plain(clone.get_config()) == _plain(model.get_config())


def test_non_finite_step_is_skipped_and_counted():
    model = _model()
    x = _data(8)
    model(x)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    before = [v.numpy().copy() for v in model.trainable_variables]
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    logs = model.fit(bad, epochs=1, batch_size=8, verbose=0).history
    assert logs["skipped_steps"] == [1.0]
    assert int(model.optimizer.iterations.numpy()) == 0
    for old, new in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())
    # A good step still trains, and the averages exclude the skipped step.
    data = tf.data.Dataset.from_tensor_slices(np.concatenate([bad, x])).batch(8)
    logs = model.fit(data, epochs=1, verbose=0).history
    assert logs["skipped_steps"] == [1.0] and np.isfinite(logs["loss"][0])
    assert int(model.optimizer.iterations.numpy()) == 1


def test_guard_stops_a_diverged_run_loudly():
    model = _model()
    x = _data(8)
    x[:, 0, 0, 0] = np.nan
    model(x[:1])
    model.compile(optimizer="adam")
    with pytest.raises(FloatingPointError, match="non-finite"):
        model.fit(x, epochs=1, batch_size=4, verbose=0,
                  callbacks=[callbacks.SkippedStepGuard()])


def test_kl_warmup_and_beta_follow_the_step():
    model = _model(objective=ELBO(beta=2.0, kl_warmup_steps=100))
    model(_data(2))
    model.compile(optimizer="adam")
    kl_weight = lambda: model.training_objective.kl_weight(model.optimizer_step())  # noqa: E731
    assert kl_weight().numpy() == 0.0
    model.optimizer.iterations.assign(25)
    assert kl_weight().numpy() == pytest.approx(0.5)
    out = model.objective(tf.constant(_data(4)), tf.constant([1, 2]))
    assert out["beta"].numpy() == pytest.approx(0.5)
    assert out["loss"].numpy() == pytest.approx(out["distortion"].numpy() + 0.5 * out["rate"].numpy(),
                                                rel=1e-5)


def test_free_bits_groups_need_a_factorized_posterior():
    with pytest.raises(ValueError, match="factorized.*Received: free_bits_groups=2"):
        _model(families.FullCovarianceGaussian(4), objective=ELBO(free_bits=1.0, free_bits_groups=2))
    # One group (the total KL) works for any posterior: max(lambda, E[KL]).
    model = _model(families.FullCovarianceGaussian(4), objective=ELBO(free_bits=1000.0))
    model(_data(2))
    model.compile(optimizer="adam")
    out = model.objective(tf.constant(_data(4)), tf.constant([1, 2]))
    assert out["loss"].numpy() == pytest.approx(out["distortion"].numpy() + 1000.0, rel=1e-6)


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 5, 6, 1), "float32"), r"Expected examples of shape \[batch, 6, 6, 1\]"),
    (np.zeros((2, 36), "float32"), "Received: shape"),
    (np.full((2, *SHAPE), 1.5, "float32"), r"must lie in \[0.0, 1.0\].*max=1.5"),
    (np.full((2, *SHAPE), -0.1, "float32"), r"min=-0.1"),
    (np.full((2, *SHAPE), np.nan, "float32"), "72 non-finite"),
])
def test_bad_input_is_named(x, message):
    model = _model()
    model(_data(2))
    with pytest.raises(ValueError, match=message):
        model.elbo(x)
    with pytest.raises(ValueError, match=message):
        model.log_prob(x, num_samples=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"beta": -1.0}, "Received: beta=-1.0"),
    ({"free_bits": -0.1}, "Received: free_bits=-0.1"),
    ({"free_bits_groups": 3}, "must divide.*Received: free_bits_groups=3"),   # in `bind`
    ({"kl_warmup_steps": -5}, "Received: kl_warmup_steps=-5"),
])
def test_bad_constructor_arguments(kwargs, message):
    # The ELBO's own range checks refuse at construction, the ones against the model
    # (4 latents: 3 groups do not divide them) when the model takes it.
    with pytest.raises(ValueError, match=message):
        _model(objective=ELBO(**kwargs))


def test_sample_shapes_and_seed_determinism():
    model = _model()
    model(_data(2))
    a = model.sample(5, seed=(4, 2)).numpy()
    b = model.sample(5, seed=(4, 2)).numpy()
    assert a.shape == (5, *SHAPE) and np.all((a >= 0) & (a <= 1))
    np.testing.assert_array_equal(a, b)
