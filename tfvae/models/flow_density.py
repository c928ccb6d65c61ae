"""A normalizing flow as a stand-alone density model (book §4.4).

log p(x) = log p(z) + log |det dz/dx| with z = f^-1(x) through the flow of a
`FlowPrior` (MAF or RealNVP). For 8-bit images the model is fitted to
uniformly dequantized data y = (k + u) / 2^bits, u ~ U[0, 1)^D, optionally
through the logit transform of RealNVP (Dinh et al. 2016), and reports the
discrete log-likelihood bound log P(k) >= E_u[log p(y)] - D log 2^bits in
nats, so that bits/dim = -log P(k) / (D log 2) is the standard figure.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfvae import objectives
from tfvae import streams
from tfvae.models import example_model
from tfvae.models import guarded_step

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class FlowDensity(example_model.ExampleModelMixin, keras.Model):
    """Maximum-likelihood flow density model for vectors or dequantized images.

    Args:
      event_shape: shape of one example, e.g. (2,) or (28, 28, 1).
      flow: a prior layer with `distribution()` over the flattened example
        (e.g. `tfvae.flows.density.FlowPrior`), latent_size = prod(event_shape).
      num_bits: bits per value of discrete data (8 for images, whose values
        arrive as k / (2^bits - 1) in [0, 1]); 0 for continuous data.
      logit_alpha: for discrete data, model logit(alpha + (1 - 2 alpha) y)
        instead of y (0 disables).
      seed: int seed of the dequantization noise.
    """

    def __init__(self, event_shape, flow, *, num_bits=0, logit_alpha=0.05, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in event_shape)
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
        self.seed = seed
        self._make_seed_generators(seed)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "elbo")}
        self._trackers["skipped_steps"] = keras.metrics.Sum(name="skipped_steps")

    @property
    def likelihood_support(self):
        """"discrete" for dequantized 8-bit data (log_prob bounds log P(k)), else "real"."""
        return "discrete" if self.num_bits else "real"

    def build(self, input_shape):
        if not self.flow.built:
            self.flow.build((None, self.num_dims))
        self.built = True

    def _flat(self, data):
        if isinstance(data, (tuple, list)):       # fit(x=array) / train_on_batch give (x,)
            data = data[0]
        x = data["image"] if isinstance(data, dict) else data
        x = tf.convert_to_tensor(x, self.compute_dtype)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"Expected examples of shape [batch, {', '.join(map(str, self.image_shape))}]. "
                             f"Received: shape={list(x.shape)}")
        return tf.reshape(x, [-1, self.num_dims])

    def _log_density(self, flat, seed, num_draws=None):
        """log p of dequantized draws, in the data's discrete units.

        Args:
          flat: [batch, D] values k / (2^bits - 1) (or continuous data).
          seed: stateless seed [2] of the dequantization noise.
          num_draws: None for one draw ([batch] out), else that many ([num_draws, batch]).
        """
        if not self.num_bits:
            return self.flow.distribution().log_prob(flat)
        levels = 2.0 ** self.num_bits
        counts = tf.round(flat * (levels - 1.0))                        # k in 0..levels-1
        shape = tf.shape(flat) if num_draws is None else tf.concat([[num_draws], tf.shape(flat)], 0)
        y = (counts + tf.random.stateless_uniform(shape, seed=seed)) / levels
        log_jacobian = -self.num_dims * math.log(levels)               # y -> k units
        if self.logit_alpha:
            alpha = self.logit_alpha
            s = alpha + (1.0 - 2.0 * alpha) * y
            t = tf.math.log(s) - tf.math.log1p(-s)
            # d t / d y = (1 - 2 alpha) / (s (1 - s)).
            log_jacobian += tf.reduce_sum(math.log(1.0 - 2.0 * alpha) - tf.math.log(s)
                                          - tf.math.log1p(-s), axis=-1)
            y = t
        return self.flow.distribution().log_prob(y) + log_jacobian

    def elbo(self, x, seed=None):
        """log p(x) [batch]: exact for continuous data; for discrete data the
        single-draw dequantization bound E_u[log p(y)] - D log 2^bits."""
        return self._log_density(self._flat(x), self._seed(seed, self.eval_seed_generator))

    def log_prob(self, x, num_samples=1, chunk_size=100, seed=None):
        """log p(x) [batch]; for discrete data importance-sampled over K =
        `num_samples` dequantization draws (tighter than `elbo` as K grows)."""
        flat = self._flat(x)
        # A stream of its own: the same seed in `elbo` must not give the same draws.
        seed = streams.fold(self._seed(seed, self.eval_seed_generator), "importance")
        if not self.num_bits:
            return self._log_density(flat, seed)
        if isinstance(num_samples, (int, np.integer)):
            chunk_size = min(chunk_size, int(num_samples))

        def log_weights(chunk):
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, chunk)
            return self._log_density(flat, chunk_seed, chunk_size)    # [chunk, batch]

        return objectives.chunked_log_mean_exp(log_weights, num_samples, chunk_size)

    def sample(self, num_samples, seed=None):
        """Samples [num_samples, *event_shape]; images mapped back to [0, 1]."""
        y = self.flow.distribution().sample(num_samples,
                                            seed=self._seed(seed, self.eval_seed_generator))
        if self.num_bits:
            if self.logit_alpha:
                y = (tf.sigmoid(y) - self.logit_alpha) / (1.0 - 2.0 * self.logit_alpha)
            y = tf.clip_by_value(tf.floor(y * 2.0 ** self.num_bits), 0.0,
                                 2.0 ** self.num_bits - 1.0) / (2.0 ** self.num_bits - 1.0)
        return tf.reshape(y, [-1, *self.image_shape])

    def call(self, inputs):
        """log p(x) [batch] at a fixed dequantization draw (for building)."""
        return self._log_density(self._flat(inputs), tf.constant([0, 0]))

    @property
    def metrics(self):
        return list(self._trackers.values())

    def train_step(self, data):
        flat = self._flat(data)
        with tf.GradientTape() as tape:
            log_p = tf.reduce_mean(self._log_density(flat, self._seed(None, self.seed_generator)))
            loss = -log_p / guarded_step.num_replicas()
        finite = guarded_step.minimize_if_finite(self.optimizer, tape, loss,
                                                 self.trainable_variables)
        guarded_step.update_metrics(self._trackers, {"loss": -log_p, "elbo": log_p}, finite)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        log_p = tf.reduce_mean(self.elbo(data))
        guarded_step.update_metrics(self._trackers, {"loss": -log_p, "elbo": log_p},
                                    tf.math.is_finite(log_p))
        return {m.name: m.result() for m in self.metrics if m.name != "skipped_steps"}

    def serving_endpoints(self, chunk_size=100):
        """SavedModel signatures: log_prob(x, num_samples, seed) -> {log_prob},
        elbo(x, seed) -> {elbo} (the single-draw bound) and
        sample(num_samples, seed) -> {samples}."""
        x = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")
        return [
            ("log_prob", lambda x, n, s: {"log_prob": self.log_prob(
                x, num_samples=n, chunk_size=chunk_size, seed=s)}, [x, count, seed]),
            ("elbo", lambda x, s: {"elbo": self.elbo(x, seed=s)}, [x, seed]),
            ("sample", lambda n, s: {"samples": self.sample(n, seed=s)}, [count, seed]),
        ]

    def get_config(self):
        return {**super().get_config(), "event_shape": list(self.image_shape),
                "flow": keras.saving.serialize_keras_object(self.flow),
                "num_bits": self.num_bits, "logit_alpha": self.logit_alpha, "seed": self.seed}
