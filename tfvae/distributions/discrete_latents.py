"""Discrete latents through the Gumbel-softmax / Concrete relaxation (book §4.5).

The latent is N independent categorical variables with K classes each, coded
one-hot: z [..., N, K]. Training needs reparameterized samples (§2.4), which
a categorical does not have; the Gumbel-softmax (Jang et al. 2017) or
Concrete (Maddison et al. 2017) distribution relaxes it: with g_k ~ Gumbel(0, 1),

    y = softmax((logits + g) / tau),

a point of the simplex that becomes the one-hot argmax sample as the
temperature tau -> 0. We sample its logarithm, log y, from TFP's
`ExpRelaxedOneHotCategorical`, whose density is finite where y underflows.

`RelaxedCategorical` is the posterior family: `make(params)` gives the exact
categorical q(z|x) (used by the exact importance-sampled log p(x)),
`relaxed(params, tau)` the relaxed one used in training.
`UniformCategoricalPrior` is p(z), uniform over the K classes.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import samplers

from tfvae.distributions import families

tfd = tfp.distributions

_PACKAGE = "tfvae"
KL_ESTIMATORS = ("discrete", "relaxed")


def _check_sizes(num_latents, num_categories):
    for name, value, low in (("num_latents", num_latents, 1),
                             ("num_categories", num_categories, 2)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    return int(num_latents), int(num_categories)


def _check_temperature(temperature):
    if isinstance(temperature, (int, float, np.floating)) and not temperature > 0:
        raise ValueError(f"`temperature` must be positive. Received: temperature={temperature!r}")
    return temperature


class GumbelMaxOneHotCategorical(tfd.OneHotCategorical):
    """`tfd.OneHotCategorical` sampled by the Gumbel-max trick.

    z = one_hot(argmax_k(logits_k + g_k)), g_k = -log(-log u_k), u ~ U(0, 1):
    exactly categorical. Drawn from stateless uniforms of shape [n, ...], the
    first m of n samples equal an m-sample draw with the same seed (TFP's
    categorical sampler does not have this), so an importance-sampled
    estimate does not depend on how its samples are chunked.
    """

    def _sample_n(self, n, seed=None):
        logits = self.logits_parameter()
        shape = tf.concat([[n], tf.shape(logits)], 0)
        # The smallest positive float as lower bound keeps log(u) finite.
        u = samplers.uniform(shape, minval=np.finfo(logits.dtype.as_numpy_dtype).tiny,
                             maxval=1.0, dtype=logits.dtype, seed=seed)
        gumbel = -tf.math.log(-tf.math.log(u))
        return tf.one_hot(tf.argmax(logits + gumbel, axis=-1), tf.shape(logits)[-1],
                          dtype=self.dtype)


def _one_hot_categorical(logits):
    """N independent one-hot categoricals, event [N, K], float samples."""
    return tfd.Independent(GumbelMaxOneHotCategorical(logits=logits, dtype=logits.dtype),
                           reinterpreted_batch_ndims=1)


def _exp_relaxed(logits, temperature):
    """The log of N independent Gumbel-softmax variables, event [N, K]."""
    temperature = tf.cast(temperature, logits.dtype)
    return tfd.Independent(tfd.ExpRelaxedOneHotCategorical(temperature, logits=logits),
                           reinterpreted_batch_ndims=1)


@keras.saving.register_keras_serializable(_PACKAGE)
class RelaxedCategorical(families.Family):
    """N categorical latents with K classes: exact and Gumbel-softmax relaxed q(z|x).

    Args:
      num_latents: N, the number of categorical variables.
      num_categories: K >= 2, classes per variable.

    The encoder head emits logits [..., N * K] (class index innermost);
    `latent_size` = N * K is the size of the flattened one-hot code the
    decoder reads.
    """

    def __init__(self, num_latents, num_categories):
        self.num_latents, self.num_categories = _check_sizes(num_latents, num_categories)
        super().__init__((self.num_latents, self.num_categories))
        self.latent_size = self.num_latents * self.num_categories

    @property
    def params_size(self):
        return self.latent_size

    def logits(self, params):
        """Reshapes params [..., N * K] to logits [..., N, K]."""
        params = families.full_precision(params)
        if params.shape[-1] is not None and params.shape[-1] != self.params_size:
            raise ValueError(f"`params` must have last dimension {self.params_size}. "
                             f"Received: params.shape={params.shape}")
        return tf.reshape(params, tf.concat([tf.shape(params)[:-1], self.event_shape], 0))

    def make(self, params):
        """The exact q(z|x): N independent OneHotCategorical, event [N, K]."""
        return _one_hot_categorical(self.logits(params))

    def relaxed(self, params, temperature):
        """The relaxed q: log of Gumbel-softmax samples, `ExpRelaxedOneHotCategorical`, event [N, K]."""
        return _exp_relaxed(self.logits(params), _check_temperature(temperature))

    def get_config(self):
        return {"num_latents": self.num_latents, "num_categories": self.num_categories}


@keras.saving.register_keras_serializable(_PACKAGE)
class UniformCategoricalPrior(keras.layers.Layer):
    """p(z): N independent categoricals, uniform over K classes.

    Args:
      num_latents: N.
      num_categories: K >= 2.

    Call args:
      inputs: one-hot z [..., N, K].

    Returns:
      log p(z) [...] = -N log K for one-hot z.
    """

    def __init__(self, num_latents, num_categories, **kwargs):
        super().__init__(**kwargs)
        self.num_latents, self.num_categories = _check_sizes(num_latents, num_categories)
        self.latent_size = self.num_latents * self.num_categories

    def _logits(self):
        return tf.zeros([self.num_latents, self.num_categories], self.compute_dtype)

    def distribution(self):
        """The exact prior: OneHotCategorical, event [N, K], empty batch shape."""
        return _one_hot_categorical(self._logits())

    def relaxed(self, temperature):
        """The relaxed prior at `temperature` (log space), event [N, K]."""
        return _exp_relaxed(self._logits(), _check_temperature(temperature))

    def call(self, inputs):
        return self.distribution().log_prob(inputs)

    def get_config(self):
        return {**super().get_config(), "num_latents": self.num_latents,
                "num_categories": self.num_categories}


def annealed_temperature(step, initial, minimum, rate):
    """tau = max(minimum, initial * exp(-rate * step)) (Jang et al. 2017, §4).

    Args:
      step: optimizer step (int or scalar tensor).
      initial: tau_0 > 0.
      minimum: tau_min > 0.
      rate: r >= 0 per step.

    Returns:
      Scalar float32 tensor.
    """
    step = tf.cast(step, tf.float32)
    return tf.maximum(float(minimum), float(initial) * tf.exp(-float(rate) * step))


def straight_through(soft):
    """The straight-through Gumbel-softmax (Jang et al. 2017, §2.2).

    The forward value is the one-hot argmax of `soft` [..., K]; the gradient
    is that of `soft` (stop_gradient hides the non-differentiable argmax).
    """
    hard = tf.one_hot(tf.argmax(soft, axis=-1), tf.shape(soft)[-1], dtype=soft.dtype)
    return soft + tf.stop_gradient(hard - soft)
