"""Encoder and decoder networks: Keras 3 layers that map tensors to tensors.

Networks never return distributions (Keras 3 layers must return tensors);
a family (`tfvae.distributions.families`) turns their output into one. Each
is a `tfvae.nn.precision.Network`: under `--mixed_precision` it computes in
bfloat16 or float16 and returns float32.
"""

import keras
import numpy as np

from tfvae.nn import precision

_PACKAGE = "tfvae"


def _check_units(value, name, allow_empty=True):
    try:
        units = tuple(int(u) for u in value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a sequence of positive integers. "
                         f"Received: {name}={value!r}") from None
    if any(u <= 0 for u in units) or (not allow_empty and not units):
        raise ValueError(f"`{name}` must be a sequence of positive integers. "
                         f"Received: {name}={value!r}")
    return units


def _check_positive(value, name):
    if not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


@keras.saving.register_keras_serializable(_PACKAGE)
class MLP(precision.Network):
    """Multilayer perceptron on flattened inputs.

    Input [batch, ...] is flattened to [batch, n]; hidden Dense layers with
    `activation`; a final linear Dense layer with `output_units`.

    Args:
      hidden_units: sizes of the hidden layers, e.g. `(512, 512)`.
      output_units: size of the (linear) output.
      activation: Keras activation name for the hidden layers.
      output_activation: activation of the output layer (None: linear).
      output_shape_: optional shape to reshape the output to (per example).

    Call args:
      inputs: [batch, ...] float tensor.

    Returns:
      [batch, output_units] (or [batch, *output_shape_]).
    """

    def __init__(self, hidden_units, output_units, activation="relu", output_activation=None,
                 output_shape_=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = _check_units(hidden_units, "hidden_units")
        self.output_units = _check_positive(output_units, "output_units")
        self.activation = activation
        self.output_activation = output_activation
        keras.activations.get(activation)  # Raises ValueError for an unknown name.
        keras.activations.get(output_activation)
        self.output_shape_ = None if output_shape_ is None else _check_units(
            output_shape_, "output_shape_", allow_empty=False)
        if self.output_shape_ and int(np.prod(self.output_shape_)) != self.output_units:
            raise ValueError(
                f"`output_shape_` must have {self.output_units} elements. "
                f"Received: output_shape_={output_shape_!r}")
        policy = self.dtype_policy       # the sub-layers compute as the network does
        self._flatten = keras.layers.Flatten(dtype=policy)
        self._hidden = [keras.layers.Dense(u, activation=activation, name=f"dense_{i}",
                                           dtype=policy)
                        for i, u in enumerate(self.hidden_units)]
        self._out = keras.layers.Dense(self.output_units, activation=output_activation,
                                       name="dense_out", dtype=policy)

    def build(self, input_shape):
        n = int(np.prod(input_shape[1:]))
        for layer in self._hidden:
            layer.build((None, n))
            n = layer.units
        self._out.build((None, n))

    def call(self, inputs):
        h = self._flatten(inputs)
        for layer in self._hidden:
            h = layer(h)
        out = self._out(h)
        if self.output_shape_:
            out = keras.ops.reshape(out, (-1,) + self.output_shape_)
        return self.full_precision_output(out)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + (self.output_shape_ or (self.output_units,))

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units),
                "output_units": self.output_units, "activation": self.activation,
                "output_activation": self.output_activation,
                "output_shape_": None if self.output_shape_ is None else list(self.output_shape_)}


@keras.saving.register_keras_serializable(_PACKAGE)
class ConvEncoder(precision.Network):
    """Strided convolutional encoder: images [batch, H, W, C] -> [batch, output_units].

    Each entry of `filters` is a 3x3 convolution with stride 2 (halving H and
    W), then the feature map is flattened and mapped by a Dense layer with
    the same activation to the features h. Works for 28x28x1 and 32x32x3
    images alike.

    Args:
      filters: channels of the strided convolutions, e.g. `(32, 64)`.
      output_units: size of the feature output.
      activation: Keras activation name.
    """

    def __init__(self, filters, output_units, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.filters = _check_units(filters, "filters", allow_empty=False)
        self.output_units = _check_positive(output_units, "output_units")
        self.activation = activation
        keras.activations.get(activation)
        policy = self.dtype_policy       # the sub-layers compute as the network does
        self._convs = [keras.layers.Conv2D(f, 3, strides=2, padding="same",
                                           activation=activation, name=f"conv_{i}", dtype=policy)
                       for i, f in enumerate(self.filters)]
        self._flatten = keras.layers.Flatten(dtype=policy)
        self._out = keras.layers.Dense(self.output_units, activation=activation, name="dense_out",
                                       dtype=policy)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"ConvEncoder expects images [batch, H, W, C]. "
                             f"Received: input_shape={input_shape}")
        shape = tuple(input_shape)
        for conv in self._convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self._out.build((None, int(np.prod(shape[1:]))))

    def call(self, inputs):
        h = inputs
        for conv in self._convs:
            h = conv(h)                  # [batch, H/2^i, W/2^i, filters_i]
        return self.full_precision_output(self._out(self._flatten(h)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_units)

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters),
                "output_units": self.output_units, "activation": self.activation}


@keras.saving.register_keras_serializable(_PACKAGE)
class ConvDecoder(precision.Network):
    """Transposed-convolution decoder: z [batch, d] -> [batch, H, W, output_channels].

    A Dense layer maps z to a [H/2^n, W/2^n, filters[0]] feature map; each
    entry of `filters` is a stride-2 transposed convolution doubling H and W;
    a final 3x3 convolution emits `output_channels` per pixel (e.g. C logits
    for a Bernoulli, 2C for a Gaussian with learned scale).

    Args:
      image_shape: (H, W, C) of the output images; H and W divisible by 2^n.
      filters: channels of the transposed convolutions, e.g. `(64, 32)`.
      output_channels: parameters per pixel of the output.
      activation: Keras activation name.
    """

    def __init__(self, image_shape, filters, output_channels, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = _check_units(image_shape, "image_shape", allow_empty=False)
        self.filters = _check_units(filters, "filters", allow_empty=False)
        self.output_channels = _check_positive(output_channels, "output_channels")
        self.activation = activation
        keras.activations.get(activation)
        if len(self.image_shape) != 3:
            raise ValueError(f"`image_shape` must be (H, W, C). Received: image_shape={image_shape!r}")
        factor = 2 ** len(self.filters)
        height, width, _ = self.image_shape
        if height % factor or width % factor:
            raise ValueError(
                f"`image_shape` height and width must be divisible by 2**len(filters)={factor}. "
                f"Received: image_shape={image_shape!r}, filters={filters!r}")
        self._start_shape = (height // factor, width // factor, self.filters[0])
        policy = self.dtype_policy       # the sub-layers compute as the network does
        self._dense = keras.layers.Dense(int(np.prod(self._start_shape)), activation=activation,
                                         name="dense_in", dtype=policy)
        self._deconvs = [keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same",
                                                      activation=activation, name=f"deconv_{i}",
                                                      dtype=policy)
                         for i, f in enumerate(self.filters)]
        self._out = keras.layers.Conv2D(self.output_channels, 3, padding="same", name="conv_out",
                                        dtype=policy)

    def build(self, input_shape):
        self._dense.build(input_shape)
        shape = (None,) + self._start_shape
        for deconv in self._deconvs:
            deconv.build(shape)
            shape = deconv.compute_output_shape(shape)
        self._out.build(shape)

    def call(self, inputs):
        h = keras.ops.reshape(self._dense(inputs), (-1,) + self._start_shape)
        for deconv in self._deconvs:
            h = deconv(h)                # [batch, 2h, 2w, filters_i]
        return self.full_precision_output(self._out(h))    # [batch, H, W, output_channels]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.image_shape[:2] + (self.output_channels,)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "filters": list(self.filters), "output_channels": self.output_channels,
                "activation": self.activation}
