"""Our own layer contract check (after Keras' internal `run_layer_test`).

Every layer of the library goes through `check_layer`: it builds, has the
expected output shape and number of trainable weights, survives a
`get_config` -> `from_config` round trip with the same config, and a `.keras`
save -> load of a model wrapping it gives the same outputs. Families (plain
serializable objects) go through `check_family`.
"""

import os
import tempfile

import keras
import numpy as np


def check_layer(layer, input_shape, expected_output_shape, expected_trainable_weights,
                input_data=None):
    """Runs the contract on an unbuilt `layer`; returns its output on `input_data`."""
    rng = np.random.default_rng(0)
    x = input_data if input_data is not None else rng.normal(size=input_shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    assert tuple(y.shape) == tuple(expected_output_shape), (y.shape, expected_output_shape)
    assert len(layer.trainable_weights) == expected_trainable_weights, [
        w.path for w in layer.trainable_weights]
    assert np.all(np.isfinite(y))

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone_y = keras.ops.convert_to_numpy(clone(x))
    assert clone_y.shape == y.shape

    inputs = keras.Input(shape=tuple(input_shape[1:]))
    model = keras.Model(inputs, layer(inputs))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), y, rtol=1e-6, atol=1e-6)
    return y


def check_family(family, params):
    """Config and Keras-serialization round trips; returns family.make(params)."""
    config = family.get_config()
    clone = type(family).from_config(config)
    assert clone == family and clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(family))
    assert restored == family
    assert params.shape[-1] == family.params_size
    return family.make(params)
