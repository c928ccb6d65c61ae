"""Objectives for disentangling VAEs: β-VAE capacity annealing and the β-TCVAE decomposition.

β-VAE (Higgins et al. 2017) is `objectives.elbo_loss` with beta > 1. Here:

* Capacity annealing (Burgess et al. 2018, "Understanding disentangling in
  β-VAE"): loss = -E log p(x|z) + γ |KL - C(t)|, the target capacity C(t)
  rising linearly from 0 to C_max nats over a number of steps.
* The β-TCVAE decomposition (Chen et al. 2018, "Isolating sources of
  disentanglement in VAEs"): with the aggregate posterior
  q(z) = (1/N) sum_n q(z|x_n) over a training set of N examples,

      E_x KL(q(z|x) || p(z)) = I_q(x; z)                      (index-code MI)
                             + KL(q(z) || prod_j q(z_j))       (total correlation)
                             + sum_j KL(q(z_j) || p(z_j))      (dimension-wise KL),

  each term estimated on a minibatch from the matrix log q(z_i|x_j) of
  every sample z_i against every posterior q(.|x_j) of the batch.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import families
from tfvae.objectives import base
from tfvae.objectives import elbo
from tfvae import validation

tfd = tfp.distributions

ESTIMATORS = ("mws", "mss")


def linear_capacity(step, capacity_max, capacity_steps):
    """C(t) = capacity_max * min(1, step / capacity_steps) nats (Burgess et al. 2018)."""
    step = tf.cast(step, tf.float32)
    return capacity_max * tf.minimum(1.0, step / float(capacity_steps))


def capacity_loss(log_likelihood, kl, capacity, gamma):
    """The capacity-annealed β-VAE objective of Burgess et al. (2018).

    Args:
      log_likelihood: log p(x|z) [samples, batch].
      kl: KL(q||p) [batch] (analytic) or [samples, batch] (Monte Carlo).
      capacity: target KL C(t) in nats (scalar).
      gamma: weight of |KL - C|.

    Returns:
      Dict of scalars: `loss` = distortion + gamma |rate - C| (the minibatch
      mean KL is pulled to C, as in the paper), `elbo`, `rate`,
      `distortion`, `capacity`.
    """
    distortion = -tf.reduce_mean(log_likelihood)
    rate = tf.reduce_mean(kl)
    capacity = tf.cast(capacity, rate.dtype)
    return {"loss": distortion + gamma * tf.abs(rate - capacity), "elbo": -(distortion + rate),
            "rate": rate, "distortion": distortion, "capacity": capacity}


def log_importance_weights(batch_size, dataset_size, estimator):
    """log r_ij, the weight of q(z_i|x_j) in the minibatch estimate of q(z_i).

    q(z_i) ~= sum_j r_ij q(z_i|x_j) for z_i ~ q(z|x_i) (Chen et al. 2018,
    appendix C):

    * "mws" (minibatch weighted sampling, C.1): r_ij = 1 / (N M) for all j,
      M = batch size, exactly as published. Its weights sum to 1/N, not 1:
      where the posteriors of the batch overlap, its log q(z) sits log N
      below the aggregate posterior's, so its TC estimate carries an additive
      offset of about (d - 1) log N (d latent dimensions; see
      tests/test_beta_tc.py). The offset does not depend on the parameters
      there, so the gradients are still sensible, but its value is not the TC.
    * "mss" (minibatch stratified sampling, C.2): r_ii = 1/N for the sample's
      own x_i, r_ij = (N - M') / (N M') for one other element (j = i + 1 mod
      M) and 1 / M' for the rest, M' = M - 1; each row sums to 1, and the
      estimate of q(z_i) is consistent as the batch grows. (The authors'
      reference code fills the matrix through a flattened view with stride M,
      which puts the 1/N and stratum weights in columns 0 and 1 rather than on
      and next to the diagonal; here they sit where appendix C.2 puts them.)

    Args:
      batch_size: M, scalar int tensor or int (>= 2 for "mss").
      dataset_size: N, the number of training examples.
      estimator: "mws" or "mss".

    Returns:
      [M, M] log weights (rows i: the sample, columns j: the posterior).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"`estimator` must be one of {', '.join(ESTIMATORS)}. "
                         f"Received: estimator={estimator!r}")
    m = tf.cast(batch_size, tf.float32)
    n = tf.cast(dataset_size, tf.float32)
    if estimator == "mws":
        return tf.fill([batch_size, batch_size], -tf.math.log(n * m))
    others = tf.maximum(m - 1.0, 1.0)      # M' (a batch of one has no others)
    eye = tf.eye(batch_size)
    # j = i + 1 mod M, the one stratum-weighted element (none in a batch of one).
    next_one = tf.roll(eye, shift=1, axis=1) * (1.0 - eye)
    weights = ((1.0 - eye - next_one) / others + next_one * (n - others) / (n * others)
               + eye / n)
    return tf.math.log(weights)


def tc_decomposition(z, loc, scale, log_prior, dataset_size, estimator="mws"):
    """Minibatch estimates of the three terms of the β-TCVAE decomposition.

    Args:
      z: one sample per example, z_i ~ q(z|x_i) [batch, d].
      loc, scale: the factorized Gaussian posteriors q(z|x_j) [batch, d].
      log_prior: log p(z_i) [batch] (a factorized prior, e.g. N(0, I)).
      dataset_size: N, training examples in the aggregate posterior.
      estimator: "mws" or "mss" (see `log_importance_weights`).

    Returns:
      Dict of scalars (batch means, nats): `mi` = E[log q(z|x) - log q(z)],
      `tc` = E[log q(z) - sum_j log q(z_j)], `dwkl` = E[sum_j log q(z_j) -
      log p(z)]. mi + tc + dwkl is the Monte-Carlo KL E[log q(z|x) - log p(z)]
      exactly, whatever the estimator.
    """
    # log q(z_i,d | x_j): sample i against posterior j, per dimension [i, j, d].
    log_q_dims = tfd.Normal(loc[tf.newaxis], scale[tf.newaxis]).log_prob(z[:, tf.newaxis])
    batch_size = tf.shape(z)[0]
    log_w = log_importance_weights(batch_size, dataset_size, estimator)     # [i, j]
    log_q_given_x = tf.reduce_sum(tfd.Normal(loc, scale).log_prob(z), axis=-1)      # [i]
    # Mixtures in log space (logsumexp): the densities themselves underflow.
    log_q = tf.reduce_logsumexp(tf.reduce_sum(log_q_dims, -1) + log_w, axis=1)        # [i]
    log_q_marginals = tf.reduce_sum(
        tf.reduce_logsumexp(log_q_dims + log_w[..., tf.newaxis], axis=1), axis=-1)     # [i]
    return {"mi": tf.reduce_mean(log_q_given_x - log_q),
            "tc": tf.reduce_mean(log_q - log_q_marginals),
            "dwkl": tf.reduce_mean(log_q_marginals - log_prior)}


@keras.saving.register_keras_serializable(base.PACKAGE)
class CapacityELBO(base.Objective):
    """The capacity-annealed β-VAE objective (Burgess et al. 2018) as an `Objective`.

    loss = distortion + γ |rate - C(t)|, C(t) = capacity_max * min(1, t /
    capacity_steps) at optimizer step t. Logged: `loss`, `elbo`, `rate`,
    `distortion`, `capacity` (C(t)). It replaces β, warm-up and free bits
    (the capacity is the schedule of the rate), so it has none of them.

    Args:
      capacity_max: final target KL C_max in nats, >= 0.
      capacity_steps: steps over which C rises linearly from 0 to C_max, >= 1.
      gamma: weight γ of |KL - C|, > 0.
      analytic_kl: closed-form (True) or Monte-Carlo (False) KL.
    """

    metric_names = ("loss", "elbo", "rate", "distortion", "capacity")

    def __init__(self, capacity_max, capacity_steps=100000, gamma=1000.0, analytic_kl=True):
        super().__init__(analytic_kl)
        self.capacity_max = validation.non_negative("capacity_max", capacity_max)
        self.capacity_steps = validation.at_least("capacity_steps", capacity_steps, 1)
        self.gamma = validation.positive("gamma", gamma)

    def loss(self, terms, step):
        capacity = linear_capacity(step, self.capacity_max, self.capacity_steps)
        return capacity_loss(terms.log_likelihood, terms.kl, capacity, self.gamma)

    def get_config(self):
        return {**super().get_config(), "capacity_max": self.capacity_max,
                "capacity_steps": self.capacity_steps, "gamma": self.gamma}


@keras.saving.register_keras_serializable(base.PACKAGE)
class BetaTC(base.Objective):
    """The β-TCVAE objective (Chen et al. 2018) as an `Objective`.

    With one z_i ~ q(z|x_i) per example,
    loss = -log p(x|z) + α I_q(x; z) + β TC(z) + γ sum_j KL(q(z_j) || p(z_j)),
    the terms estimated on the minibatch by `tc_decomposition`; α = β = γ = 1
    is the Monte-Carlo-KL ELBO exactly. Logged: `loss`, `elbo` (the standard
    ELBO with the model's KL), `rate`, `distortion`, `beta`, `mi`, `tc`, `dwkl`.

    Args:
      alpha, beta, gamma: weights of the MI, the TC and the dimension-wise KL (>= 0).
      dataset_size: N, the training examples of the aggregate posterior (>= 1).
      estimator: "mss" or "mws" (see `log_importance_weights`).
      analytic_kl: estimator of the logged `rate` / `elbo` (the loss uses
        the decomposition either way).

    Raises:
      ValueError: a negative weight, dataset_size < 1, an unknown estimator;
        in `bind`, a model whose posterior and prior do not factorize over
        dimensions (a factorized Gaussian without a flow and N(0, I) needed).
    """

    metric_names = ("loss", "elbo", "rate", "distortion", "beta", "mi", "tc", "dwkl")

    def __init__(self, alpha=1.0, beta=6.0, gamma=1.0, dataset_size=50000, estimator="mss",
                 analytic_kl=False):
        super().__init__(analytic_kl)
        self.alpha = validation.non_negative("alpha", alpha)
        self.beta = validation.non_negative("beta", beta)
        self.gamma = validation.non_negative("gamma", gamma)
        self.dataset_size = validation.at_least("dataset_size", dataset_size, 1)
        self.estimator = validation.one_of("estimator", estimator, ESTIMATORS)

    def bind(self, model):
        super().bind(model)
        if not model.kl_support().factorized_gaussian:
            raise ValueError(
                "The β-TC decomposition needs per-dimension posterior densities: a factorized "
                "Gaussian posterior without a flow and the standard-normal prior. Received: "
                f"a {type(model).__name__} whose KL does not split over dimensions.")

    def loss(self, terms, step):
        del step  # no schedule
        q, p, z = terms.posterior
        z = z[0]                                                        # [batch, d]
        loc, scale = families.diagonal_normal_params(q)
        parts = tc_decomposition(z, loc, scale, p.log_prob(z), self.dataset_size,
                                 self.estimator)
        out = elbo.elbo_loss(terms.log_likelihood, terms.kl)
        out["loss"] = (out["distortion"] + self.alpha * parts["mi"] + self.beta * parts["tc"]
                       + self.gamma * parts["dwkl"])
        out["beta"] = tf.constant(self.beta, out["loss"].dtype)
        return {**out, **parts}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta,
                "gamma": self.gamma, "dataset_size": self.dataset_size,
                "estimator": self.estimator}
