"""Weight normalization: data-dependent init statistics, the init happens once, contract."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_contract import check_layer
from tfvae.training import callbacks
from tfvae.nn import weight_norm

RNG = np.random.default_rng(11)


def _batch(shape):
    # Far from standardized: the init must undo an offset and a scale.
    return (3.0 + 5.0 * RNG.normal(size=shape)).astype("float32")


def test_dense_init_batch_preactivations_are_standardized():
    layer = weight_norm.WeightNormDense(7)
    x = _batch((256, 5))
    before = layer(x).numpy()                     # training=False: no init, g = 1, b = 0
    assert float(layer.initialized.numpy()) == 0.0
    assert abs(before.mean()) > 0.1 or abs(before.std() - 1) > 0.1
    out = layer(x, training=True).numpy()
    assert float(layer.initialized.numpy()) == 1.0
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-4)
    # Direction v/||v|| is unchanged, so w = g v/||v|| has per-unit norm g.
    w = layer.g.numpy() * layer.v.numpy() / np.linalg.norm(layer.v.numpy(), axis=0)
    np.testing.assert_allclose(out, x @ w + layer.b.numpy(), rtol=1e-4, atol=1e-4)
    # The init happens once: another batch is not standardized again.
    other = layer(_batch((256, 5)) * 2.0, training=True).numpy()
    assert abs(other.std(axis=0).mean() - 1.0) > 0.3


def test_conv_init_standardizes_over_batch_and_positions_with_init_scale():
    layer = weight_norm.WeightNormConv2D(4, kernel_size=3, strides=2, init_scale=0.1)
    out = layer(_batch((8, 10, 10, 3)), training=True).numpy()
    assert out.shape == (8, 5, 5, 4)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 0.1, rtol=1e-4)


def test_activation_applies_after_the_standardized_preactivation():
    layer = weight_norm.WeightNormDense(3, activation="relu")
    out = layer(_batch((512, 4)), training=True).numpy()
    # relu of a standardized Gaussian-ish pre-activation: about half are zero.
    assert 0.3 < (out == 0).mean() < 0.7


def test_layer_contract():
    check_layer(weight_norm.WeightNormDense(6, activation="elu"), (4, 5), (4, 6), 3)
    check_layer(weight_norm.WeightNormConv2D(2, kernel_size=1), (2, 4, 4, 3), (2, 4, 4, 2), 3)


def _wrapped_layer(initialize):
    """A functional model around one WeightNormDense "wn"; initialized on a batch if asked."""
    inputs = keras.Input((5,))
    layer = weight_norm.WeightNormDense(7, name="wn")
    model = keras.Model(inputs, layer(inputs))
    if initialize:
        layer(_batch((256, 5)), training=True)
    return model, layer


def _assert_restored_without_reinit(restored, original, x, expected):
    """`restored` holds `original`'s flag and weights, and a training call does not re-init."""
    assert float(restored.initialized.numpy()) == 1.0
    for name in ("v", "g", "b"):
        np.testing.assert_array_equal(getattr(restored, name).numpy(),
                                      getattr(original, name).numpy(), err_msg=name)
    g, b = restored.g.numpy(), restored.b.numpy()
    np.testing.assert_allclose(restored(x, training=True).numpy(), expected, rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_array_equal(restored.g.numpy(), g)
    np.testing.assert_array_equal(restored.b.numpy(), b)


def test_init_flag_is_saved_and_a_restored_layer_is_not_reinitialized(tmp_path):
    model, layer = _wrapped_layer(initialize=True)
    assert float(layer.initialized.numpy()) == 1.0
    assert [w.path for w in layer.non_trainable_weights] == [layer.initialized.path]
    # A batch the init would standardize, and the initialized layer does not: a re-run of
    # the init on restore would show in the outputs.
    x = _batch((64, 5)) * 2.0 + 4.0
    expected = layer(x, training=True).numpy()
    assert abs(expected.std(axis=0).mean() - 1.0) > 0.3
    assert np.abs(expected.mean(axis=0)).max() > 0.3
    # Whole-model .keras file.
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    _assert_restored_without_reinit(loaded.get_layer("wn"), layer, x, expected)
    # Weights file into a fresh layer that was never initialized.
    model.save_weights(tmp_path / "model.weights.h5")
    fresh_model, fresh = _wrapped_layer(initialize=False)
    assert float(fresh.initialized.numpy()) == 0.0
    fresh_model.load_weights(tmp_path / "model.weights.h5")
    _assert_restored_without_reinit(fresh, layer, x, expected)
    # A tf.train.Checkpoint of every variable by path, as the training loop writes it.
    path = tf.train.Checkpoint(model_variables=callbacks.model_variables(model)).write(
        str(tmp_path / "ckpt"))
    fresh_model, fresh = _wrapped_layer(initialize=False)
    tf.train.Checkpoint(model_variables=callbacks.model_variables(fresh_model)).read(
        path).assert_consumed()
    _assert_restored_without_reinit(fresh, layer, x, expected)
    # The control: a fresh layer that missed the flag would re-initialize on that batch.
    _, unrestored = _wrapped_layer(initialize=False)
    out = unrestored(x, training=True).numpy()
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-4)


@pytest.mark.parametrize("make, message", [
    (lambda: weight_norm.WeightNormDense(0), "units"),
    (lambda: weight_norm.WeightNormDense(3, init_scale=0.0), "init_scale"),
    (lambda: weight_norm.WeightNormConv2D(3, kernel_size=0), "kernel_size"),
])
def test_invalid_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
