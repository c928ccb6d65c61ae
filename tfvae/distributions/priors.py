"""Priors p(z): Keras 3 layers whose `distribution()` returns a `tfd.Distribution`.

A prior is a layer so that learned priors (flows, mixtures, VampPrior) keep
their weights tracked, checkpointed and exported like any other layer.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class StandardNormal(keras.layers.Layer):
    """The standard-normal prior p(z) = N(0, I) of the book (§1.7.3, §2.5).

    Args:
      latent_size: dimension of z.

    Call args:
      inputs: ignored; any tensor (Keras needs one to build the layer).

    Returns:
      (`distribution()`): MultivariateNormalDiag with event shape [latent_size]
      and empty batch shape.
    """

    def __init__(self, latent_size, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(latent_size, (int, np.integer)) or latent_size <= 0:
            raise ValueError(
                f"`latent_size` must be a positive integer. Received: latent_size={latent_size!r}")
        self.latent_size = int(latent_size)

    def distribution(self):
        """Returns p(z), event shape [latent_size]."""
        zeros = tf.zeros([self.latent_size], dtype=self.compute_dtype)
        return tfd.MultivariateNormalDiag(loc=zeros, scale_diag=tf.ones_like(zeros))

    def call(self, inputs):
        """Returns log p(z) [...] for z [..., latent_size]."""
        return self.distribution().log_prob(inputs)

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size}
