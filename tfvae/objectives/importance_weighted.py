"""The importance-weighted bound (IWAE) and its M x K variant (MIWAE).

Burda et al. (2015), "Importance Weighted Autoencoders": with k samples
z_1..z_k ~ q(z|x) and log weights log w_i = log p(x, z_i) - log q(z_i|x),

    L_k(x) = E[log (1/k) sum_i w_i] <= log p(x),

L_1 is the ELBO (book §2.2), L_k is non-decreasing in k and tends to log p(x)
(the importance-sampled estimator of book §2.6 is its k = K evaluation).
Rainforth et al. (2018), "Tighter variational bounds are not necessarily
better": MIWAE averages M independent IWAE-K bounds, which trades bound
tightness for a better signal-to-noise ratio of the encoder's gradient.
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae.objectives import base
from tfvae.objectives import elbo as objectives


def check_counts(k, m):
    """Raises ValueError unless k and m are integers >= 1."""
    for name, value in (("k", k), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")


def iwae_bound(log_weights, k, m=1):
    """The (M)IWAE bound per example from m * k log weights.

    Args:
      log_weights: log p(x, z) - log q(z|x) [m * k, batch] for independent
        z ~ q(z|x) (any order: the samples are i.i.d.).
      k: importance samples inside each log-mean-exp.
      m: number of independent IWAE-k bounds averaged (1 = IWAE).

    Returns:
      [batch]: (1/m) sum_j log (1/k) sum_i w_ji; with k = m = 1 the
      single-sample ELBO.

    Raises:
      ValueError: invalid k or m, or a sample axis that is not m * k long.
    """
    check_counts(k, m)
    log_weights = tf.convert_to_tensor(log_weights)
    if log_weights.shape[0] is not None and log_weights.shape[0] != k * m:
        raise ValueError(f"`log_weights` must have m * k = {m * k} samples on axis 0. "
                         f"Received: log_weights.shape={log_weights.shape}")
    grouped = tf.reshape(log_weights, tf.concat([[m, k], tf.shape(log_weights)[1:]], 0))
    # logsumexp inside log_mean_exp: the weights w = exp(log w) under- or
    # overflow float32 for any realistic image likelihood.
    return tf.reduce_mean(objectives.log_mean_exp(grouped, axis=1), axis=0)   # [batch]


def iwae_loss(log_likelihood, kl, k, m=1):
    """The training objective dict of an (M)IWAE from Monte-Carlo ELBO terms.

    Args:
      log_likelihood: log p(x|z) [m * k, batch].
      kl: Monte-Carlo KL log q(z|x) - log p(z) at the same z [m * k, batch].
      k, m: as in `iwae_bound`.

    Returns:
      Dict of scalars: `loss` = -mean (M)IWAE bound (minimized); `iwae` the
      bound; `elbo` the standard ELBO estimated from the same m * k samples
      (comparable with every other model's `elbo`); `rate` mean KL;
      `distortion` mean -log p(x|z).
    """
    bound = tf.reduce_mean(iwae_bound(log_likelihood - kl, k, m))
    distortion = -tf.reduce_mean(log_likelihood)
    rate = tf.reduce_mean(kl)
    return {"loss": -bound, "iwae": bound, "elbo": -(distortion + rate), "rate": rate,
            "distortion": distortion}


@keras.saving.register_keras_serializable(base.PACKAGE)
class IWAEBound(base.Objective):
    """The (M)IWAE bound as a training objective (Burda et al. 2015; Rainforth et al. 2018).

    m * k Monte-Carlo draws per example; loss = -(1/m) sum_j log (1/k)
    sum_i w_ji. Logged: `loss`, `elbo` (the standard ELBO from the same
    draws, comparable across models), `rate`, `distortion`, `iwae` (the bound).
    It has no β, warm-up or free bits: those weight a KL the bound does not
    contain.

    Args:
      k: importance samples inside each log-mean-exp (k = 1: the ELBO).
      m: independent IWAE-k bounds averaged (1 = IWAE, > 1 = MIWAE).
      analytic_kl: must be False: the log weights need log q(z|x) at z.

    Raises:
      ValueError: k or m not an integer >= 1, or analytic_kl=True.
    """

    metric_names = ("loss", "elbo", "rate", "distortion", "iwae")

    def __init__(self, k=5, m=1, analytic_kl=False):
        check_counts(k, m)
        if analytic_kl:
            raise ValueError("The IWAE bound needs the Monte-Carlo log weights "
                             "log p(x|z) + log p(z) - log q(z|x): use analytic_kl=False. "
                             f"Received: analytic_kl={analytic_kl!r}")
        super().__init__(analytic_kl=False)
        self.k = int(k)
        self.m = int(m)

    @property
    def num_samples(self):
        return self.k * self.m

    def loss(self, terms, step):
        del step  # no schedule
        return iwae_loss(terms.log_likelihood, terms.kl, self.k, self.m)

    def bound(self, model, x, seed=None):
        """The (M)IWAE bound per example [B] of `model` on examples x, at its evaluation seed."""
        batch = model.read_batch(x, check_values=True)
        terms = model.objective_terms(batch, model.eval_seed(seed), num_samples=self.num_samples,
                                      analytic_kl=False)
        return iwae_bound(terms.log_likelihood - terms.kl, self.k, self.m)

    def get_config(self):
        return {"k": self.k, "m": self.m, "analytic_kl": False}
