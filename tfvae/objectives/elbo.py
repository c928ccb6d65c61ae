"""Objectives: pure functions from log-densities and distributions to tensors.

The ELBO is written once here (book §2.2, Algorithm 1); beta, KL warm-up and
free bits (§2.8.1) are arguments of it, not copies of it. The importance
sampled marginal likelihood (§2.6) is a chunked log-mean-exp so that K = 5000
runs in bounded memory.

Naming follows TFP and the book: `rate` = KL(q(z|x) || p(z)),
`distortion` = -log p(x|z), `elbo` = -(distortion + rate).
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import families
from tfvae.objectives import base
from tfvae import validation

tfd = tfp.distributions


def kl_divergence(q, p, z=None, analytic=True):
    """KL(q(z|x) || p(z)) per example, analytic or single-sample Monte Carlo.

    Args:
      q: posterior with batch shape [batch], event shape [d].
      p: prior with event shape [d].
      z: samples from q, [samples, batch, d]; needed when `analytic=False`.
      analytic: use the closed form (TFP's registered KL) if True, else the
        Monte-Carlo estimate log q(z|x) - log p(z) (book §2.2).

    Returns:
      [batch] (analytic) or [samples, batch] (Monte Carlo).

    Raises:
      ValueError: `analytic=False` without `z`.
    """
    if analytic:
        return tfd.kl_divergence(q, p)
    if z is None:
        raise ValueError("`z` is required for the Monte-Carlo KL (analytic=False). Received: z=None")
    return q.log_prob(z) - p.log_prob(z)


def kl_per_dimension(q, p, z=None, analytic=True):
    """KL per latent dimension for factorized Gaussian q and p (§2.8.1).

    Args:
      q, p: diagonal Gaussians, event shape [d].
      z: samples [samples, batch, d]; needed when `analytic=False`.
      analytic: closed form if True, else log q(z_i) - log p(z_i) at z.

    Returns:
      [batch, d] (analytic) or [samples, batch, d]; sums to `kl_divergence`.

    Raises:
      ValueError: q or p is not factorized (the per-dimension KL of a
        full-covariance posterior is not defined), or z is missing.
    """
    q_params = families.diagonal_normal_params(q)
    p_params = families.diagonal_normal_params(p)
    if q_params is None or p_params is None:
        raise ValueError(
            "Free bits per latent group need a factorized posterior and prior; "
            f"received q={type(q).__name__}, p={type(p).__name__}. Use free_bits_groups=1 "
            "(one group: the total KL) with this posterior.")
    q_dims, p_dims = tfd.Normal(*q_params), tfd.Normal(*p_params)
    if analytic:
        return tfd.kl_divergence(q_dims, p_dims)
    if z is None:
        raise ValueError("`z` is required for the Monte-Carlo KL (analytic=False). Received: z=None")
    return q_dims.log_prob(z) - p_dims.log_prob(z)


def group_sum(values, num_groups):
    """Sums the last axis [..., d] into `num_groups` contiguous groups [..., num_groups].

    Raises:
      ValueError: d is not divisible by `num_groups`.
    """
    d = values.shape[-1]
    if not isinstance(num_groups, int) or num_groups <= 0 or d % num_groups:
        raise ValueError(
            f"`free_bits_groups` must be a positive divisor of the latent size {d}. "
            f"Received: free_bits_groups={num_groups!r}")
    shape = tf.concat([tf.shape(values)[:-1], [num_groups, d // num_groups]], 0)
    return tf.reduce_sum(tf.reshape(values, shape), axis=-1)


def free_bits_rate(kl_groups, free_bits):
    """The free-bits rate term sum_j max(lambda, E_minibatch[KL_j]) (book §2.8.1).

    Args:
      kl_groups: per-group KL [..., batch, groups] (leading sample axes are
        averaged together with the minibatch).
      free_bits: lambda in nats per group, >= 0.

    Returns:
      Scalar: the rate term that replaces the mean KL in the loss.
    """
    groups = kl_groups.shape[-1]
    mean_kl = tf.reduce_mean(tf.reshape(kl_groups, [-1, groups]), axis=0)   # [groups]
    return tf.reduce_sum(tf.maximum(tf.cast(free_bits, mean_kl.dtype), mean_kl))


def linear_warmup(step, warmup_steps):
    """KL warm-up weight min(1, step / warmup_steps) (book §2.8.1); 1 if warmup_steps == 0."""
    if warmup_steps <= 0:
        return tf.constant(1.0)
    step = tf.cast(step, tf.float32)
    return tf.minimum(1.0, step / float(warmup_steps))


def elbo_loss(log_likelihood, kl, *, beta=1.0, kl_groups=None, free_bits=0.0):
    """The minibatch ELBO objective of Algorithm 1, with beta and free bits.

    loss = E[-log p(x|z)] + beta * R, where R = E[KL] or, with free bits,
    sum_j max(lambda, E[KL_j]) over latent groups j.

    Args:
      log_likelihood: log p(x|z) [samples, batch].
      kl: KL(q||p) [batch] (analytic) or [samples, batch] (Monte Carlo).
      beta: weight of the rate term (scalar; includes any warm-up factor).
      kl_groups: per-group KL [..., batch, groups]; required if free_bits > 0.
      free_bits: lambda in nats per group (0 disables free bits).

    Returns:
      Dict of scalars: `loss` (to minimize), `elbo` (the unweighted bound,
      per example), `rate`, `distortion`.
    """
    distortion = -tf.reduce_mean(log_likelihood)
    rate = tf.reduce_mean(kl)
    if free_bits:
        if kl_groups is None:
            raise ValueError("`kl_groups` is required when free_bits > 0. Received: kl_groups=None")
        rate_term = free_bits_rate(kl_groups, free_bits)
    else:
        rate_term = rate
    beta = tf.cast(beta, distortion.dtype)
    return {"loss": distortion + beta * rate_term, "elbo": -(distortion + rate),
            "rate": rate, "distortion": distortion}


@keras.saving.register_keras_serializable(base.PACKAGE)
class ELBO(base.Objective):
    """The ELBO of Algorithm 1 with β, a linear KL warm-up and free bits (book §2.2, §2.8.1).

    loss = E[-log p(x|z)] + β w(t) R, w(t) = min(1, t / kl_warmup_steps) at
    optimizer step t, R = E[KL] or, with free bits λ > 0, sum_j max(λ,
    E_minibatch[KL_j]) over the model's latent groups j (`Terms.kl_groups`).
    Logged: `loss`, `elbo` (the unweighted bound per example), `rate`,
    `distortion`, `beta` (β w(t)).

    Args:
      beta: weight of the rate term, >= 0 (1 = the ELBO; β-VAE otherwise).
      kl_warmup_steps: steps of the linear warm-up of the KL weight (0: none).
      free_bits: λ in nats per group, >= 0 (0 disables free bits).
      free_bits_groups: contiguous groups per latent (layer) for free bits;
        must divide the model's group sizes, and > 1 needs a KL that splits
        over dimensions (`KLSupport.per_dimension`).
      analytic_kl: closed-form KL (True) or Monte Carlo (False).

    Raises:
      ValueError: an argument out of range (at construction), or one the
        model cannot honour (in `bind`).
    """

    metric_names = ("loss", "elbo", "rate", "distortion", "beta")

    def __init__(self, beta=1.0, kl_warmup_steps=0, free_bits=0.0, free_bits_groups=1,
                 analytic_kl=True):
        super().__init__(analytic_kl)
        self.beta = validation.non_negative("beta", beta)
        self.kl_warmup_steps = validation.at_least("kl_warmup_steps", kl_warmup_steps, 0)
        self.free_bits = validation.non_negative("free_bits", free_bits)
        self.free_bits_groups = validation.at_least("free_bits_groups", free_bits_groups, 1)

    def bind(self, model):
        super().bind(model)
        support = model.kl_support()
        if any(size % self.free_bits_groups for size in support.group_sizes):
            raise ValueError(
                f"`free_bits_groups` must divide the latent size of every latent (layer) "
                f"{list(support.group_sizes)}. Received: free_bits_groups={self.free_bits_groups}")
        if self.free_bits_groups > 1 and not support.per_dimension:
            raise ValueError(
                "Free bits per latent group need a KL that splits over latent dimensions (a "
                "factorized posterior without a flow and a factorized prior; hierarchy layers "
                f"without IAF). Use free_bits_groups=1. Received: free_bits_groups="
                f"{self.free_bits_groups}")

    def kl_weight(self, step):
        """β times the warm-up factor at optimizer step `step`."""
        return self.beta * linear_warmup(step, self.kl_warmup_steps)

    def loss(self, terms, step):
        kl_groups = terms.kl_groups(self.free_bits_groups) if self.free_bits else None
        beta = self.kl_weight(step)
        out = elbo_loss(terms.log_likelihood, terms.kl, beta=beta, kl_groups=kl_groups,
                        free_bits=self.free_bits)
        out["beta"] = tf.cast(beta, out["loss"].dtype)
        return out

    def get_config(self):
        return {**super().get_config(), "beta": self.beta,
                "kl_warmup_steps": self.kl_warmup_steps, "free_bits": self.free_bits,
                "free_bits_groups": self.free_bits_groups}


LEGACY_KEYS = ("analytic_kl", "beta", "kl_warmup_steps", "free_bits", "free_bits_groups")


def from_legacy_config(config, **defaults):
    """Moves the ELBO options a model config held before objectives were objects into an
    `ELBO` under "objective" (a `.keras` file or config of an older tfvae still loads)."""
    config = dict(config)
    options = {key: config.pop(key) for key in LEGACY_KEYS if key in config}
    if "objective" not in config and options:
        config["objective"] = ELBO(**{**defaults, **options})
    return config


def log_mean_exp(log_weights, axis=0):
    """log (1/K) sum_k exp(w_k), stable through logsumexp."""
    k = tf.cast(tf.shape(log_weights)[axis], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=axis) - tf.math.log(k)


def chunked_log_mean_exp(log_weight_fn, num_samples, chunk_size):
    """Importance-sampled log p(x) (book §2.6) in chunks of samples.

    log p(x) ~= log (1/K) sum_k w_k, accumulated as a running logsumexp over
    chunks so memory is O(chunk_size), not O(K). The last chunk is masked
    where its sample index exceeds K, so any K works (also a tensor K in an
    exported graph).

    Args:
      log_weight_fn: callable(chunk_index) -> log weights [chunk_size, batch]
        (log p(x, z) - log q(z|x) for fresh z ~ q).
      num_samples: K >= 1, int or scalar int tensor.
      chunk_size: samples per chunk (Python int).

    Returns:
      [batch] estimate of log p(x).
    """
    num_samples = tf.cast(num_samples, tf.int32)
    num_chunks = (num_samples + chunk_size - 1) // chunk_size
    first = log_weight_fn(tf.constant(0))
    sample_index = tf.range(chunk_size)[:, tf.newaxis]          # [chunk, 1]

    def masked(log_w, chunk):
        valid = sample_index + chunk * chunk_size < num_samples
        return tf.where(valid, log_w, tf.constant(-math.inf, log_w.dtype))

    def body(chunk, total):
        log_w = masked(log_weight_fn(chunk), chunk)              # [chunk, batch]
        return chunk + 1, tf.reduce_logsumexp(
            tf.stack([total, tf.reduce_logsumexp(log_w, axis=0)]), axis=0)

    total = tf.reduce_logsumexp(masked(first, 0), axis=0)       # [batch]
    _, total = tf.while_loop(lambda c, _: c < num_chunks, body, (tf.constant(1), total))
    return total - tf.math.log(tf.cast(num_samples, total.dtype))


def bits_per_dim(log_prob, num_dims):
    """-log p(x) / (D log 2): nats per example to bits per dimension.

    For 8-bit data modelled by a discrete likelihood over the 256 values (or
    binary data) this is the standard bits/dim; a density on [0, 1] needs the
    D log 256 change of scale added first.
    """
    return -log_prob / (num_dims * math.log(2.0))
