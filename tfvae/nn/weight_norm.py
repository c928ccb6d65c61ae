"""Weight normalization with data-dependent initialization (Salimans & Kingma 2016).

w = g * v / ||v|| with the norm over every axis but the output one. The
first call with `training=True` (the first training batch) initializes g and
the bias b from that batch: with t = x . v/||v|| and per-unit batch mean m
and standard deviation s (over batch and spatial positions), g = 1/s and
b = -m/s, so the layer's pre-activations on the init batch have zero mean and
unit variance (standard deviation `init_scale`: output heads use 0.1, as
openai/iaf does, so initial posterior scales and logits stay moderate) (Kingma et al. 2016 initialize their ResNet VAE this way). A
non-trainable flag records that the init happened; it is saved with the
weights, so a restored model is not re-initialized. Calls with
`training=False` before the init (e.g. building the model on one example)
use the plain initial weights g = 1, b = 0.
"""

import keras
import tensorflow as tf

_PACKAGE = "tfvae"
_EPSILON = 1e-6  # Keeps 1/s finite for a unit that is constant on the init batch.


class _WeightNorm(keras.layers.Layer):
    """Shared parts: g, b, the init flag and the data-dependent init."""

    def __init__(self, units, activation=None, init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"`units` must be a positive integer. Received: units={units!r}")
        if not float(init_scale) > 0:
            raise ValueError(f"`init_scale` must be positive. Received: init_scale={init_scale!r}")
        self.units = units
        self.init_scale = float(init_scale)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation

    def _build_common(self, kernel_shape):
        self.v = self.add_weight(name="v", shape=kernel_shape,
                                 initializer=keras.initializers.RandomNormal(stddev=0.05))
        # Replicas see different init batches: their statistics are averaged.
        self.g = self.add_weight(name="g", shape=(self.units,), initializer="ones",
                                 aggregation="mean")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros",
                                 aggregation="mean")
        self.initialized = self.add_weight(name="initialized", shape=(), initializer="zeros",
                                           trainable=False, aggregation="only_first_replica")

    def _direction(self):
        axes = list(range(len(self.v.shape) - 1))
        return self.v / tf.sqrt(tf.reduce_sum(tf.square(self.v), axis=axes, keepdims=True))

    def _linear(self, inputs, kernel):
        raise NotImplementedError

    def call(self, inputs, training=False):
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)

        def linear():
            return self._linear(inputs, self.g * self._direction()) + self.b

        if not training:
            out = linear()
        else:
            def statistics():
                t = tf.stop_gradient(self._linear(inputs, self._direction()))
                mean, variance = tf.nn.moments(t, axes=list(range(len(t.shape) - 1)))
                inv_std = self.init_scale / tf.sqrt(variance + _EPSILON)
                return inv_std, -mean * inv_std

            # Only the values are chosen in the `cond`; the assigns stay outside it, where
            # a MirroredStrategy replica may make them (an assign in a `cond` branch is a
            # `merge_call`, which it refuses). After the init they assign g and b their
            # own values.
            g, b = tf.cond(self.initialized > 0.5,
                           lambda: (tf.identity(self.g), tf.identity(self.b)), statistics)
            with tf.control_dependencies([self.g.assign(tf.cast(g, self.g.dtype)),
                                          self.b.assign(tf.cast(b, self.b.dtype)),
                                          self.initialized.assign(1.0)]):
                out = linear()
        return self.activation(out) if self.activation is not None else out

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": self._activation_name, "init_scale": self.init_scale}


@keras.saving.register_keras_serializable(_PACKAGE)
class WeightNormDense(_WeightNorm):
    """Dense layer with weight normalization and data-dependent init.

    Args:
      units: output size.
      activation: Keras activation name (None: linear).
      init_scale: standard deviation of the outputs after the data-dependent init.

    Call args:
      inputs: [batch, features]; training: bool, the first True call initializes.

    Returns:
      [batch, units].
    """

    def build(self, input_shape):
        self._build_common((int(input_shape[-1]), self.units))

    def _linear(self, inputs, kernel):
        return tf.matmul(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)


@keras.saving.register_keras_serializable(_PACKAGE)
class WeightNormConv2D(_WeightNorm):
    """2-D convolution (NHWC) with weight normalization and data-dependent init.

    Args:
      units: output channels.
      kernel_size: int, square kernel.
      strides: int stride.
      activation: Keras activation name (None: linear).
      init_scale: standard deviation of the outputs after the data-dependent init.

    Call args:
      inputs: [batch, H, W, C]; training: bool, the first True call initializes.

    Returns:
      [batch, H / strides, W / strides, units] ("same" padding).
    """

    def __init__(self, units, kernel_size=3, strides=1, activation=None, init_scale=1.0,
                 **kwargs):
        super().__init__(units, activation, init_scale, **kwargs)
        for name, value in (("kernel_size", kernel_size), ("strides", strides)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        self.kernel_size = kernel_size
        self.strides = strides

    def build(self, input_shape):
        k = self.kernel_size
        self._build_common((k, k, int(input_shape[-1]), self.units))

    def _linear(self, inputs, kernel):
        return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding="SAME")

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        s = self.strides
        return (n, None if h is None else -(-h // s), None if w is None else -(-w // s), self.units)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides}


def dense(units, activation=None, weight_norm=False, name=None, init_scale=1.0):
    """A `WeightNormDense` or a plain `keras.layers.Dense` (both take `training`)."""
    if weight_norm:
        return WeightNormDense(units, activation=activation, init_scale=init_scale, name=name)
    return keras.layers.Dense(units, activation=activation, name=name)


def conv(units, kernel_size=3, strides=1, activation=None, weight_norm=False, name=None,
         init_scale=1.0):
    """A `WeightNormConv2D` or a plain "same"-padded `keras.layers.Conv2D`."""
    if weight_norm:
        return WeightNormConv2D(units, kernel_size, strides, activation=activation,
                                init_scale=init_scale, name=name)
    return keras.layers.Conv2D(units, kernel_size, strides, padding="same",
                               activation=activation, name=name)
