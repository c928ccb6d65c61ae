"""The posterior-flow protocol shared by every flow of q(z|x) (book §3.2.2).

A `FlowLayer` is a Keras 3 layer that turns the per-datapoint parameters
the encoder head emits for it ([batch, params_size]; amortized flows such as
planar, Householder and Sylvester take all their parameters from there, IAF
takes its context h) into a `tfb.Bijector` acting on z [..., batch, d]
(leading sample dimensions broadcast against the batch). The posterior is

    q(z_T|x) = TransformedDistribution(q(z_0|x), bijector)

and log q(z_T|x) = log q(z_0|x) - sum_t log |det dz_t/dz_{t-1}|.
Layers return tensors: `call(params)` returns its input unchanged, so Keras
can build and track the layer; the bijector comes from `bijector(params)`.
"""

import keras
import numpy as np
import tensorflow as tf


class FlowLayer(keras.layers.Layer):
    """Base class of posterior flows.

    Args:
      latent_size: dimension d of z.
      num_flows: number of flow steps T (>= 1).
    """

    def __init__(self, latent_size, num_flows, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("latent_size", latent_size), ("num_flows", num_flows)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        self.latent_size = int(latent_size)
        self.num_flows = int(num_flows)

    @property
    def params_size(self):
        """Numbers per datapoint the encoder head emits for this flow."""
        raise NotImplementedError

    def bijector(self, params):
        """Returns the `tfb.Bijector` for params [batch, params_size]."""
        raise NotImplementedError

    def split_steps(self, params, step_size):
        """Validates amortized parameters and splits them per flow step.

        Step t reads the contiguous block params[..., t*step_size:(t+1)*step_size].

        Args:
          params: [batch, num_flows * step_size] from the encoder head.
          step_size: parameters per step.

        Returns:
          A list of `num_flows` tensors [batch, step_size].

        Raises:
          ValueError: the last dimension of `params` is not num_flows * step_size.
        """
        params = tf.convert_to_tensor(params)
        size = self.num_flows * step_size
        if params.shape.rank is None or params.shape.rank < 1 or params.shape[-1] != size:
            raise ValueError(
                f"`params` must have shape [batch, {size}] ({self.num_flows} flow steps of "
                f"{step_size} parameters). Received: params.shape={params.shape}")
        return tf.split(params, self.num_flows, axis=-1)

    def build(self, input_shape):
        """Creates the flow's own weights (none for amortized flows)."""

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size,
                "num_flows": self.num_flows}
