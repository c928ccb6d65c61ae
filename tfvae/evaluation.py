"""Held-out evaluation: ELBO, importance-sampled log-likelihood, bits/dim.

Every number carries its estimator: `elbo` is the single-sample ELBO estimate
(analytic or Monte-Carlo KL as the model is configured), `log_likelihood` the
importance-sampled estimate of book §2.6 with K = `num_importance_samples`
(a stochastic lower bound of log p(x) that tightens as K grows), both in
nats per example, averaged over the split, with standard errors over
examples.
"""

import math

import numpy as np
import tensorflow as tf

from tfvae import objectives


def evaluate(model, dataset, num_samples=0, chunk_size=100, seed=0, max_examples=None):
    """Evaluates `model` on every example of `dataset`.

    Args:
      model: a built `tfvae.models.VAE` (or subclass); its `elbo` and
        `log_prob` receive each whole batch (a dict with "image" and, for
        conditional models, "label") and read what they need.
      dataset: `tf.data.Dataset` of batches (dicts with "image", or tensors).
      num_samples: K for the importance-sampled log-likelihood; 0 skips it.
      chunk_size: importance samples per chunk (memory bound).
      seed: int; batch b uses the stateless seed (seed, b): reproducible.
      max_examples: stop after this many examples (None: all).

    Returns:
      Dict with `n`, `elbo`, `elbo_stderr`, `num_importance_samples`,
      `log_likelihood`, `log_likelihood_stderr`, `bits_per_dim`,
      `bits_per_dim_stderr` (the last five None when num_samples is 0).

    Raises:
      ValueError: invalid `num_samples` or an empty dataset.
    """

    @tf.function
    def elbo_fn(batch, batch_seed):
        return model.elbo(batch, seed=batch_seed)

    @tf.function
    def log_prob_fn(batch, batch_seed):
        return model.log_prob(batch, num_samples=num_samples, chunk_size=chunk_size,
                              seed=batch_seed)

    return evaluate_functions(elbo_fn, log_prob_fn, dataset, num_samples, seed, max_examples)


def evaluate_functions(elbo_fn, log_prob_fn, dataset, num_samples, seed=0, max_examples=None):
    """`evaluate` for any per-example estimators, e.g. a SavedModel's signatures.

    Args:
      elbo_fn: callable(batch, seed [2] int32) -> ELBO [n]; `batch` is the
        dataset's batch (a dict {"image": [n, H, W, C], "label": [n]}, or
        the image tensor).
      log_prob_fn: callable(batch, seed) -> IS estimate of log p(x) [n] with K =
        `num_samples` (only called when num_samples > 0).
      dataset, num_samples, seed, max_examples: as in `evaluate`.

    Returns:
      The dict of `evaluate`.
    """
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
        raise ValueError(f"`num_samples` must be an integer >= 0. Received: num_samples={num_samples!r}")
    if max_examples is not None and max_examples <= 0:
        raise ValueError(f"`max_examples` must be positive or None. Received: max_examples={max_examples!r}")
    elbos, log_probs, count, num_dims = [], [], 0, None
    for index, batch in enumerate(dataset):
        if max_examples is not None:
            batch = tf.nest.map_structure(lambda t: t[:max_examples - count], batch)
        x = batch["image"] if isinstance(batch, dict) else batch
        num_dims = int(np.prod(x.shape[1:]))
        batch_seed = tf.constant([seed, index], tf.int32)
        elbos.append(np.asarray(elbo_fn(batch, batch_seed)))
        if num_samples:
            log_probs.append(np.asarray(log_prob_fn(batch, batch_seed)))
        count += int(x.shape[0])
        if max_examples is not None and count >= max_examples:
            break
    if not count:
        raise ValueError("The evaluation dataset is empty.")
    elbo = np.concatenate(elbos).astype(np.float64)
    result = {"n": count, "elbo": float(elbo.mean()), "elbo_stderr": _stderr(elbo),
              "num_importance_samples": num_samples or None, "log_likelihood": None,
              "log_likelihood_stderr": None, "bits_per_dim": None, "bits_per_dim_stderr": None}
    if num_samples:
        log_prob = np.concatenate(log_probs).astype(np.float64)
        result.update(
            log_likelihood=float(log_prob.mean()), log_likelihood_stderr=_stderr(log_prob),
            bits_per_dim=float(objectives.bits_per_dim(log_prob.mean(), num_dims)),
            bits_per_dim_stderr=_stderr(log_prob) / (num_dims * math.log(2.0)))
    return result


def _stderr(values):
    """Standard error of the mean over examples (0 for a single example)."""
    if len(values) < 2:
        return 0.0
    return float(values.std(ddof=1) / math.sqrt(len(values)))
