"""The inference gaps of §2.7 per example, and the posterior-collapse report.

For each example x (Cremer et al. 2018):

- amortized ELBO(q_phi): the encoder's posterior;
- local ELBO(q*): the best posterior of the same family for this x
  (`local_posterior.optimize`, started at the encoder's parameters);
- log p(x) by AIS (`ais.ais_log_prob`, started from q*), with IS (book §2.6)
  beside it;
- approximation gap = log p(x) - ELBO(q*), what the family cannot express;
- amortization gap = ELBO(q*) - ELBO(q_phi), what the encoder misses.

The two add up to log p(x) - ELBO(q_phi) = KL(q_phi || p(z|x)) (book eq. 2.8).
Active units (Burda et al. 2015): latent dimension u is active if
Cov_x(E_q[z_u | x]) > 0.01.
"""

import numpy as np
import tensorflow as tf

from tfvae.evaluation import ais as ais_lib
from tfvae.evaluation import local_posterior

ACTIVE_UNIT_THRESHOLD = 0.01


def inference_gaps(model, data, elbo_samples=1000, is_samples=1000, ais_chains=16,
                   ais_steps=500, local_steps=300, local_learning_rate=0.05, seed=(0, 0)):
    """The gaps of one batch, per example.

    Args:
      model: a model with per-example posterior parameters
        (`local_posterior.check_supported`: VAE and its continuous variants,
        HierarchicalVAE).
      data: a batch: examples [B, ...], or a dataset's dict {"image", "label"} (a
        conditional model reads its condition from it).
      elbo_samples: draws of z for each ELBO (amortized and local).
      is_samples: K of the importance-sampled log p(x).
      ais_chains, ais_steps: AIS chains per example and intermediate distributions.
      local_steps, local_learning_rate: the per-example ascent to q*.
      seed: stateless seed [2].

    Returns:
      {name: float64 [B]} for "amortized_elbo", "local_elbo", "log_prob_is",
      "log_prob_ais", "approximation_gap", "amortization_gap", and the scalar
      "ais_acceptance".
    """
    local_posterior.check_supported(model)
    seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 5))
    batch = model.read_batch(data, check_values=True)
    start = model.posterior_params(batch.x, batch.context)
    optimize = tf.function(lambda p, s: local_posterior.optimize(
        model, batch, p, num_steps=local_steps, learning_rate=local_learning_rate, seed=s))
    best, _ = optimize(start, seeds[0])
    # Both ELBOs with the same draws' seed: the comparison is not blurred by noise.
    amortized = local_posterior.elbo(model, batch, start, elbo_samples, seeds[1])
    local = local_posterior.elbo(model, batch, best, elbo_samples, seeds[1])
    log_prob_is = model.log_prob(batch.x, batch.context, num_samples=is_samples, seed=seeds[2])
    # AIS starts from q* (nearer the posterior than q_phi): fewer chains suffice.
    result = ais_lib.ais_log_prob(model, batch, num_chains=ais_chains, num_steps=ais_steps,
                                  seed=seeds[3], start_params=best)
    out = {"amortized_elbo": amortized, "local_elbo": local, "log_prob_is": log_prob_is,
           "log_prob_ais": result.log_prob}
    out = {k: np.asarray(v, np.float64) for k, v in out.items()}
    out["approximation_gap"] = out["log_prob_ais"] - out["local_elbo"]
    out["amortization_gap"] = out["local_elbo"] - out["amortized_elbo"]
    out["ais_acceptance"] = float(result.acceptance)
    return out


def active_units(posterior_means, threshold=ACTIVE_UNIT_THRESHOLD):
    """(Cov_x(E_q[z_u|x]) per dimension [d], the number above `threshold`).

    Args:
      posterior_means: E_q[z|x] of N examples [N, d] (N >= 2).
    """
    means = np.asarray(posterior_means, np.float64)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError("`posterior_means` must be [N >= 2, d]. "
                         f"Received: shape={list(means.shape)}")
    variance = means.var(axis=0, ddof=1)
    return variance, int((variance > threshold).sum())
