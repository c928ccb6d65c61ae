"""A normalizing flow as a stand-alone density model (book §4.4).

log p(x) = log p(z) + log |det dz/dx| with z = f^-1(x) through the flow of a
`FlowPrior` (MAF or RealNVP). For 8-bit images the model is fitted to
uniformly dequantized data y = (k + u) / 2^bits, u ~ U[0, 1)^D, optionally
through the logit transform of RealNVP (Dinh et al. 2016), and reports the
discrete log-likelihood bound log P(k) >= E_u[log p(y)] - D log 2^bits in
nats, so that bits/dim = -log P(k) / (D log 2) is the standard figure.

In the `LatentVariableModel` protocol the dequantized y is the latent: its
"posterior" q(y|k) is uniform on k's bin (log q = D log 2^bits), log_joint is
the model density of y (its bin determines k), so log w = log p(y) - log q(y|k)
and the importance-sampled log p(x) is the base's (Ho et al. 2019's view of
dequantization as variational inference). Continuous data have no latent:
`log_prob` is the exact density.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfvae.models import base
from tfvae.models import serving

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class FlowDensity(base.LatentVariableModel):
    """Maximum-likelihood flow density model for vectors or dequantized images.

    Args:
      event_shape: shape of one example, e.g. (2,) or (28, 28, 1).
      flow: a prior layer with `distribution()` over the flattened example
        (e.g. `tfvae.flows.density.FlowPrior`), latent_size = prod(event_shape).
      num_bits: bits per value of discrete data (8 for images, whose values
        arrive as k / (2^bits - 1) in [0, 1]); 0 for continuous data.
      logit_alpha: for discrete data, model logit(alpha + (1 - 2 alpha) y)
        instead of y (0 disables).
      max_grad_norm, seed: as in `LatentVariableModel` (seed: of the
        dequantization noise).
    """

    def __init__(self, event_shape, flow, *, num_bits=0, logit_alpha=0.05, **kwargs):
        super().__init__(event_shape, **kwargs)
        self.num_dims = int(np.prod(self.image_shape))
        self.flow = keras.saving.deserialize_keras_object(flow) if isinstance(flow, dict) else flow
        if getattr(self.flow, "latent_size", None) != self.num_dims:
            raise ValueError(f"`flow` must act on {self.num_dims} dimensions (prod(event_shape)). "
                             f"Received: flow={self.flow!r}")
        if not isinstance(num_bits, (int, np.integer)) or num_bits < 0:
            raise ValueError(f"`num_bits` must be an integer >= 0. Received: num_bits={num_bits!r}")
        if not 0.0 <= logit_alpha < 0.5:
            raise ValueError(f"`logit_alpha` must lie in [0, 0.5). Received: logit_alpha={logit_alpha!r}")
        self.num_bits = int(num_bits)
        self.logit_alpha = float(logit_alpha)
        self.track_metrics("loss", "elbo")

    @property
    def likelihood_support(self):
        """"discrete" for dequantized 8-bit data (log_prob bounds log P(k)), else "real"."""
        return "discrete" if self.num_bits else "real"

    def build(self, input_shape):
        if not self.flow.built:
            self.flow.build((None, self.num_dims))
        self.built = True

    def _flat(self, data, check_values=False):
        return tf.reshape(self.read_examples(data, check_values), [-1, self.num_dims])

    # ------------------------------------------------------------- protocol
    def sample_posterior(self, batch, num_samples, seed):
        """Dequantized y ~ q(y|k) [S, B, D] (uniform on k's bin) and log q(y|k) [S, B].

        Continuous data have no latent: y is empty [S, B, 0] and log q = 0.
        """
        flat = tf.reshape(batch.x, [-1, self.num_dims])
        shape = tf.concat([[num_samples], tf.shape(flat)], 0)
        if not self.num_bits:
            return tf.zeros(tf.concat([shape[:2], [0]], 0)), tf.zeros(shape[:2])
        levels = 2.0 ** self.num_bits
        counts = tf.round(flat * (levels - 1.0))                        # k in 0..levels-1
        y = (counts + tf.random.stateless_uniform(shape, seed=seed)) / levels
        return y, tf.fill(shape[:2], self.num_dims * math.log(levels))

    def log_joint(self, batch, z):
        """The model density of y [S, B] (through the logit transform if any); for
        continuous data (z empty) the density of x itself."""
        if not self.num_bits:
            flat = tf.reshape(batch.x, [-1, self.num_dims])
            return tf.broadcast_to(self.flow.distribution().log_prob(flat), tf.shape(z)[:2])
        y, log_jacobian = z, 0.0
        if self.logit_alpha:
            alpha = self.logit_alpha
            s = alpha + (1.0 - 2.0 * alpha) * y
            # d t / d y = (1 - 2 alpha) / (s (1 - s)).
            log_jacobian = tf.reduce_sum(math.log(1.0 - 2.0 * alpha) - tf.math.log(s)
                                         - tf.math.log1p(-s), axis=-1)
            y = tf.math.log(s) - tf.math.log1p(-s)
        return self.flow.distribution().log_prob(y) + log_jacobian

    def _log_density(self, flat, seed, num_draws=None):
        """log p of dequantized draws in the data's discrete units: [batch], or
        [num_draws, batch] (log p(y) - log q(y|k), one draw of y per row)."""
        batch = base.Batch(flat)
        z, log_q = self.sample_posterior(batch, 1 if num_draws is None else num_draws, seed)
        log_w = self.log_joint(batch, z) - log_q
        return log_w[0] if num_draws is None else log_w

    def objective(self, data, seed, training=False):
        """Maximum likelihood: loss = -mean log p (one dequantization draw), elbo = mean log p."""
        log_p = tf.reduce_mean(self._log_density(self._flat(data), seed))
        return {"loss": -log_p, "elbo": log_p}

    def elbo(self, x, context=None, num_samples=1, seed=None):
        """log p(x) [batch]: exact for continuous data; for discrete data the
        dequantization bound E_u[log p(y)] - D log 2^bits, averaged over
        `num_samples` draws."""
        flat = self._flat(x if context is None else (x, context), check_values=True)
        return tf.reduce_mean(self._log_density(flat, self.eval_seed(seed), num_samples), axis=0)

    def log_prob(self, x, context=None, num_samples=1, chunk_size=100, seed=None):
        """log p(x) [batch]; for discrete data importance-sampled over K =
        `num_samples` dequantization draws (tighter than `elbo` as K grows);
        for continuous data the exact density (K is not used)."""
        if not self.num_bits:
            self.importance_counts(num_samples, chunk_size)   # unused, but checked as everywhere
            return self.flow.distribution().log_prob(self._flat(x, check_values=True))
        return super().log_prob(x, context, num_samples, chunk_size, seed)

    def sample(self, num_samples, seed=None):
        """Samples [num_samples, *event_shape]; images mapped back to [0, 1]."""
        num_samples = self.check_count("num_samples", num_samples, 0)
        y = self.flow.distribution().sample(num_samples, seed=self.eval_seed(seed))
        if self.num_bits:
            if self.logit_alpha:
                y = (tf.sigmoid(y) - self.logit_alpha) / (1.0 - 2.0 * self.logit_alpha)
            y = tf.clip_by_value(tf.floor(y * 2.0 ** self.num_bits), 0.0,
                                 2.0 ** self.num_bits - 1.0) / (2.0 ** self.num_bits - 1.0)
        return tf.reshape(y, [-1, *self.image_shape])

    def call(self, inputs):
        """log p(x) [batch] at a fixed dequantization draw (for building)."""
        return self._log_density(self._flat(inputs), tf.constant([0, 0]))

    def serving_endpoints(self, chunk_size=100, log_prob_samples=serving.DEFAULT_LOG_PROB_SAMPLES):
        """SavedModel signatures, inputs checked in graph (x's values, the counts).

        Batch-only: log_prob(x) -> {log_prob} (K = `log_prob_samples`
        dequantization draws for discrete data; exact for continuous data);
        elbo(x) -> {elbo} (the single-draw bound); sample(index [n]) -> {samples}.
        Seeded: log_prob_seeded(x, num_samples, seed), elbo_seeded(x, seed),
        sample_seeded(num_samples, seed).
        """
        log_prob_samples = self.check_count("log_prob_samples", log_prob_samples, 1)
        x = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        index = tf.TensorSpec([None], tf.int32, name="index")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")

        def per_example(fn, x):
            return serving.per_example(fn, self.read_examples(x, check_values=True))

        return [
            ("log_prob", lambda x: {"log_prob": per_example(lambda row: self.log_prob(
                row, num_samples=log_prob_samples, chunk_size=chunk_size,
                seed=serving.fixed_seed()), x)}, [x]),
            ("elbo", lambda x: {"elbo": per_example(
                lambda row: self.elbo(row, seed=serving.fixed_seed()), x)}, [x]),
            ("sample", lambda i: {"samples": serving.indexed_samples(
                lambda s: self.sample(1, seed=s), self.image_shape, i)}, [index]),
            ("log_prob_seeded", lambda x, n, s: {"log_prob": self.log_prob(
                x, num_samples=n, chunk_size=chunk_size, seed=s)}, [x, count, seed]),
            ("elbo_seeded", lambda x, s: {"elbo": self.elbo(x, seed=s)}, [x, seed]),
            ("sample_seeded", lambda n, s: {"samples": self.sample(n, seed=s)}, [count, seed]),
        ]

    def get_config(self):
        return {**super().get_config(), "event_shape": list(self.image_shape),
                "flow": keras.saving.serialize_keras_object(self.flow),
                "num_bits": self.num_bits, "logit_alpha": self.logit_alpha}
