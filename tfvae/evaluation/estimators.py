"""Held-out evaluation: ELBO, importance-sampled log-likelihood, and bits/dim where defined.

Every number carries its estimator: `elbo` is the single-sample ELBO estimate
(analytic or Monte-Carlo KL as the model is configured), `log_likelihood` the
importance-sampled estimate of book §2.6 with K = `num_importance_samples`
(a stochastic lower bound of log p(x) that tightens as K grows), both in
nats per example, averaged over the split, with standard errors over
examples.

What `log_likelihood` is depends on the likelihood and the data, and is named
in `likelihood_kind`:
  - "discrete": a log-probability of discrete data (a Bernoulli on binary
    data, a discretized logistic (mixture), a categorical, a dequantized
    flow's bound on log P(k)); `bits_per_dim` = -log P / (D log 2) >= 0.
  - "density": a continuous density (a Gaussian likelihood, a flow on real
    vectors); no bits/dim. For 8-bit data (values k / 255) the figure flow
    papers report, the density on the raw [0, 256]^D scale,
    (-log p(x) + D log 256) / (D log 2), is given as
    `bits_per_dim_density_256`: an approximation of a discrete bits/dim
    (exact only for a density that is flat over every bin), not a bound.
  - "cross_entropy": a Bernoulli likelihood on grey values, whose "log p" is
    a cross-entropy, not a log-probability of the data; no bits/dim.

An evaluation with K = 1000 over 10,000 images takes minutes: `Progress`
shows a Keras progress bar when stdout is a terminal and logs a line every
`PROGRESS_INTERVAL_SECONDS` otherwise (examples done, time left).
"""

import math
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfvae.objectives import elbo as objectives
from tfvae import streams

KINDS = ("discrete", "density", "cross_entropy")
SUPPORTS = ("real", "discrete", "binary")
PROGRESS_INTERVAL_SECONDS = 30.0
"""Seconds between the progress log lines of an evaluation outside a terminal."""


class Progress:
    """Progress of a pass over examples: a Keras `Progbar` in a terminal, else log lines.

    In a terminal (stdout is a TTY) the bar shows examples done, the rate and
    the time left; otherwise an absl INFO line is logged at most every
    `interval` seconds with examples done, time spent and time left, and a
    last one when the pass ends (only if a line was logged before: a short
    pass stays silent).

    Args:
      total: the examples expected (None if unknown: no time left is given).
      description: what is being done, e.g. "Evaluating ELBO and IS log p(x) (K=1000)".
      interval: seconds between log lines (None: `PROGRESS_INTERVAL_SECONDS`).
      terminal: show the bar (None: whether stdout is a terminal).
    """

    def __init__(self, total, description, interval=None, terminal=None):
        self.total = total
        self.description = description
        self.interval = PROGRESS_INTERVAL_SECONDS if interval is None else interval
        if terminal is None:
            terminal = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
        self._bar = keras.utils.Progbar(total, unit_name="example") if terminal else None
        self._start = self._last = time.monotonic()
        self._logged = False

    def update(self, done):
        """Reports `done` examples finished so far."""
        if self._bar is not None:
            self._bar.update(done)
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._start
        if self.total and done:
            left = elapsed * max(self.total - done, 0) / done
            logging.info("%s: %d/%d examples, %s, about %s left.", self.description, done,
                         self.total, _duration(elapsed), _duration(left))
        else:
            logging.info("%s: %d examples, %s.", self.description, done, _duration(elapsed))
        self._logged = True

    def finish(self, done):
        """Reports the end of the pass after `done` examples."""
        if self._bar is not None:
            self._bar.target = done
            self._bar.update(done, finalize=True)
        elif self._logged:
            logging.info("%s: done, %d examples in %s.", self.description, done,
                         _duration(time.monotonic() - self._start))


def _duration(seconds):
    """`seconds` as "42 s", "3 min 07 s" or "1 h 02 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def expected_examples(dataset, batch_size, max_examples=None):
    """The examples a pass over `dataset` will see, or None if unknown.

    Args:
      dataset: a `tf.data.Dataset` of batches (its batch count is known when
        it is finite and not filtered), or any iterable (unknown).
      batch_size: the size of its first batch.
      max_examples: the pass stops after this many (None: all).

    Returns:
      An upper bound (the last batch may be smaller), or `max_examples` when the
      count is unknown.
    """
    count = None
    if isinstance(dataset, tf.data.Dataset):
        batches = int(dataset.cardinality())
        count = batches * batch_size if batches >= 0 else None
    if count is None:
        return max_examples
    return min(count, max_examples) if max_examples else count


def evaluate(model, dataset, num_samples=0, chunk_size=100, seed=0, max_examples=None,
             progress=True):
    """Evaluates `model` on every example of `dataset`.

    Args:
      model: a built `tfvae.models.VAE` (or subclass); its `elbo` and
        `log_prob` receive each whole batch (a dict with "image" and, for
        conditional models, "label") and read what they need.
      dataset: `tf.data.Dataset` of batches (dicts with "image", or tensors).
      num_samples: K for the importance-sampled log-likelihood; 0 skips it.
      chunk_size: importance samples per chunk (memory bound).
      seed: int; batch b's ELBO and IS draws come from the streams "elbo"
        and "importance" of the stateless seed (seed, b) (`tfvae.streams`):
        reproducible, and independent of each other.
      max_examples: stop after this many examples (None: all).
      progress: show the pass's progress (`Progress`: a bar in a terminal, log
        lines otherwise).

    Returns:
      Dict with `n`, `elbo`, `elbo_stderr`, `num_importance_samples`,
      `likelihood_kind`, `log_likelihood`, `log_likelihood_stderr`,
      `bits_per_dim`, `bits_per_dim_stderr`, `bits_per_dim_density_256`
      (see the module docstring; None where not estimated or not defined).

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

    return evaluate_functions(elbo_fn, log_prob_fn, dataset, num_samples, seed, max_examples,
                              likelihood_support=model.likelihood_support, progress=progress)


def evaluate_functions(elbo_fn, log_prob_fn, dataset, num_samples, seed=0, max_examples=None,
                       likelihood_support=None, progress=True):
    """`evaluate` for any per-example estimators, e.g. a SavedModel's signatures.

    Args:
      elbo_fn: callable(batch, seed [2] int32) -> ELBO [n]; `batch` is the
        dataset's batch (a dict {"image": [n, H, W, C], "label": [n]}, or
        the image tensor).
      log_prob_fn: callable(batch, seed) -> IS estimate of log p(x) [n] with K =
        `num_samples` (only called when num_samples > 0).
      dataset, num_samples, seed, max_examples, progress: as in `evaluate`.
      likelihood_support: the model's `likelihood_support` ("real",
        "discrete", "binary"), or None if unknown (no bits/dim is given).

    Returns:
      The dict of `evaluate`.
    """
    if likelihood_support is not None and likelihood_support not in SUPPORTS:
        raise ValueError(f"`likelihood_support` must be one of {', '.join(SUPPORTS)} or None. "
                         f"Received: likelihood_support={likelihood_support!r}")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
        raise ValueError(f"`num_samples` must be an integer >= 0. Received: num_samples={num_samples!r}")
    if max_examples is not None and max_examples <= 0:
        raise ValueError(f"`max_examples` must be positive or None. Received: max_examples={max_examples!r}")
    elbos, log_probs, count, num_dims = [], [], 0, None
    binary_data = eight_bit_data = True
    description = (f"Evaluating the ELBO and IS log p(x) (K={num_samples})" if num_samples
                   else "Evaluating the ELBO")
    reporter = None
    for index, batch in enumerate(dataset):
        if max_examples is not None:
            batch = tf.nest.map_structure(lambda t: t[:max_examples - count], batch)
        x = batch["image"] if isinstance(batch, dict) else batch
        if reporter is None and progress:
            reporter = Progress(expected_examples(dataset, int(x.shape[0]), max_examples),
                                description)
        num_dims = int(np.prod(x.shape[1:]))
        values = np.asarray(x, np.float64)
        binary_data = binary_data and bool(np.all((values == 0) | (values == 1)))
        # 8-bit data arrive as k / 255 in float32: within rounding of the grid.
        eight_bit_data = eight_bit_data and bool(
            np.all((values >= 0) & (values <= 1) & (np.abs(values * 255 - np.round(values * 255))
                                                     < 1e-3)))
        batch_seed = tf.constant([seed, index], tf.int32)
        elbos.append(np.asarray(elbo_fn(batch, streams.fold(batch_seed, "elbo"))))
        if num_samples:
            log_probs.append(np.asarray(log_prob_fn(batch, streams.fold(batch_seed, "importance"))))
        count += int(x.shape[0])
        if reporter is not None:
            reporter.update(count)
        if max_examples is not None and count >= max_examples:
            break
    if reporter is not None:
        reporter.finish(count)
    if not count:
        raise ValueError("The evaluation dataset is empty.")
    elbo = np.concatenate(elbos).astype(np.float64)
    kind = likelihood_kind(likelihood_support, binary_data)
    result = {"n": count, "elbo": float(elbo.mean()), "elbo_stderr": _stderr(elbo),
              "num_importance_samples": num_samples or None, "likelihood_kind": kind,
              "log_likelihood": None, "log_likelihood_stderr": None, "bits_per_dim": None,
              "bits_per_dim_stderr": None, "bits_per_dim_density_256": None}
    if num_samples:
        log_prob = np.concatenate(log_probs).astype(np.float64)
        result.update(log_likelihood=float(log_prob.mean()),
                      log_likelihood_stderr=_stderr(log_prob))
        if kind == "discrete":
            result.update(
                bits_per_dim=float(objectives.bits_per_dim(log_prob.mean(), num_dims)),
                bits_per_dim_stderr=_stderr(log_prob) / (num_dims * math.log(2.0)))
        elif kind == "density" and eight_bit_data:
            result["bits_per_dim_density_256"] = float(objectives.bits_per_dim(
                log_prob.mean() - num_dims * math.log(256.0), num_dims))
    return result


def likelihood_kind(likelihood_support, binary_data):
    """What a model's log-likelihood is on the evaluated data (see the module docstring).

    Args:
      likelihood_support: "real", "discrete", "binary", or None (unknown).
      binary_data: whether every evaluated value was 0 or 1.

    Returns:
      "discrete", "density", "cross_entropy", or None if the support is unknown.
    """
    if likelihood_support == "binary":
        return "discrete" if binary_data else "cross_entropy"
    return {"discrete": "discrete", "real": "density"}.get(likelihood_support)


def _stderr(values):
    """Standard error of the mean over examples (0 for a single example)."""
    if len(values) < 2:
        return 0.0
    return float(values.std(ddof=1) / math.sqrt(len(values)))
