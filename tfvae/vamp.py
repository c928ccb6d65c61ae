"""The VampPrior (Tomczak & Welling 2018): a mixture of posteriors at learned pseudo-inputs.

    p(z) = (1/K) sum_k q(z | u_k),

with K pseudo-inputs u_k in image space, trained with the rest of the model
(book §4.4 on learned priors). The prior depends on the encoder, so the
layer here holds only the pseudo-inputs and builds the mixture from the
posterior the model gives it (`tfvae.models.vamp_vae.VampVAE.prior`).
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class VampPrior(keras.layers.Layer):
    """K learned pseudo-inputs u_k and the uniform mixture of q(z|u_k).

    The pseudo-inputs are sigmoid(logits): they stay in (0, 1), the range of
    the images the encoder sees (Tomczak & Welling clip theirs with a
    hardtanh for the same reason); the logits start at N(0, 1) draws.

    Args:
      num_components: K, the number of pseudo-inputs.
      image_shape: shape of one input image, e.g. (28, 28, 1).
      seed: int seed of the logits' initializer.

    Call args:
      inputs: ignored; any tensor (Keras needs one to build the layer).

    Returns:
      The pseudo-inputs u [K, *image_shape].
    """

    def __init__(self, num_components, image_shape, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_components, bool) or not isinstance(num_components, (int, np.integer)) \
                or num_components < 1:
            raise ValueError(f"`num_components` must be an integer >= 1. "
                             f"Received: num_components={num_components!r}")
        image_shape = tuple(image_shape)
        if not image_shape or not all(isinstance(s, (int, np.integer)) and s > 0
                                      for s in image_shape):
            raise ValueError(f"`image_shape` must be positive integers. "
                             f"Received: image_shape={image_shape!r}")
        self.num_components = int(num_components)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.seed = seed

    def build(self, input_shape=None):
        self.logits = self.add_weight(
            shape=(self.num_components, *self.image_shape), name="pseudo_input_logits",
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed))
        self.built = True

    def pseudo_inputs(self):
        """The pseudo-inputs u [K, *image_shape] in (0, 1)."""
        return tf.sigmoid(self.logits)

    def call(self, inputs):
        del inputs
        return self.pseudo_inputs()

    def compute_output_shape(self, input_shape):
        return (self.num_components, *self.image_shape)

    @staticmethod
    def distribution(posterior):
        """p(z) = (1/K) sum_k q(z|u_k) for `posterior` = q(z|u) at the pseudo-inputs.

        Args:
          posterior: q(z|u_k), batch shape [K], event shape [latent_size].

        Returns:
          `tfd.MixtureSameFamily` with event shape [latent_size], empty batch.
        """
        mixture = tfd.Categorical(logits=tf.zeros(posterior.batch_shape_tensor(), posterior.dtype))
        return tfd.MixtureSameFamily(mixture, posterior)

    def get_config(self):
        return {**super().get_config(), "num_components": self.num_components,
                "image_shape": list(self.image_shape), "seed": self.seed}
