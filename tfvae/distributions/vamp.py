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

from tfvae.distributions import families

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
          A `tfd.MixtureSameFamily` with event shape [latent_size] and empty
          batch shape; `DiagonalGaussianMixture` (the same distribution with
          a matmul log-density) when q is a diagonal Gaussian.
        """
        mixture = tfd.Categorical(logits=tf.zeros(posterior.batch_shape_tensor(), posterior.dtype))
        if families.diagonal_normal_params(posterior) is not None:
            return DiagonalGaussianMixture(mixture, posterior)
        return tfd.MixtureSameFamily(mixture, posterior)

    def get_config(self):
        return {**super().get_config(), "num_components": self.num_components,
                "image_shape": list(self.image_shape), "seed": self.seed}


class DiagonalGaussianMixture(tfd.MixtureSameFamily):
    """A mixture of K diagonal Gaussians whose `log_prob` is two matmuls.

    `MixtureSameFamily.log_prob` broadcasts z [..., d] against every
    component, materializing [..., K, d]; for the IS estimate (K = 1000
    samples per image, 500 components) that is gigabytes per chunk. Here

        sum_d (z_d - mu_kd)^2 / s_kd^2 = z^2 . w_k - 2 z . (mu_k w_k) + mu_k^2 . w_k,

    w_k = 1 / s_k^2, is two [N, d] x [d, K] products. The expansion cancels
    terms of size |z|^2 w, so it runs in float64 and returns the
    distribution's dtype. Same distribution, same sampling; only the
    log-density is computed differently (tests compare it with the explicit
    mixture).
    """

    def _log_prob(self, x):
        loc, scale = families.diagonal_normal_params(self.components_distribution)   # [K, d]
        x = tf.convert_to_tensor(x, self.dtype)
        loc, scale = (tf.cast(tf.broadcast_to(t, tf.shape(loc + scale)), tf.float64)
                      for t in (loc, scale))
        w = tf.math.reciprocal(tf.square(scale))                                     # [K, d]
        flat = tf.cast(tf.reshape(x, [-1, tf.shape(x)[-1]]), tf.float64)             # [N, d]
        quad = (tf.matmul(tf.square(flat), w, transpose_b=True)
                - 2.0 * tf.matmul(flat, loc * w, transpose_b=True)
                + tf.reduce_sum(tf.square(loc) * w, -1))                             # [N, K]
        dims = tf.cast(tf.shape(loc)[-1], tf.float64)
        log_components = (-0.5 * quad - tf.reduce_sum(tf.math.log(scale), -1)
                          - 0.5 * dims * np.log(2.0 * np.pi))
        log_weights = tf.math.log_softmax(
            tf.cast(self.mixture_distribution.logits_parameter(), tf.float64))      # [K]
        log_p = tf.reduce_logsumexp(log_components + log_weights, axis=-1)           # [N]
        return tf.cast(tf.reshape(log_p, tf.shape(x)[:-1]), self.dtype)
