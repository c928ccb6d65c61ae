"""Variance of ELBO gradient estimators w.r.t. the encoder (book §2.4 vs §2.9.1).

Three unbiased estimators of the gradient, with respect to the encoder's
parameters φ, of the minibatch ELBO E_q[f(z)], f(z) = log p(x, z) - log q_φ(z|x)
(Monte-Carlo KL, so the three estimate the same quantity):

* "reparameterization" (§2.4): z = g(ε, φ, x), the gradient of f(g(ε, φ, x)).
* "score_function" (REINFORCE, §2.9.1): f(z) ∇_φ log q_φ(z|x) with z held
  fixed (the term E[∇_φ f] = -E[∇_φ log q] = 0 is dropped).
* "score_function_baseline": (f(z) - b(x)) ∇_φ log q_φ(z|x) with the
  control variate b(x) = the mean of f over `baseline_samples` independent
  draws z' ~ q(z|x); independent of z, so the estimator stays unbiased.

`gradient_statistics` draws each estimator `num_draws` times on one
minibatch and returns the per-parameter mean, variance and standard error.
"""

import numpy as np
import tensorflow as tf

ESTIMATORS = ("reparameterization", "score_function", "score_function_baseline")


def encoder_variables(model):
    """φ: the trainable weights of the encoder and the latent layer, without the prior's."""
    prior_ids = {id(v) for v in model.latent.prior_layer.trainable_variables}
    return list(model.encoder.trainable_variables) + [
        v for v in model.latent.trainable_variables if id(v) not in prior_ids]


def _log_joint(model, x, z):
    """log p(x|z) + log p(z) [..., batch] for z [..., batch, d]."""
    return model.decode(z).log_prob(x) + model.prior().log_prob(z)


def surrogate(model, x, seed, estimator, baseline_samples=8):
    """A scalar whose gradient w.r.t. φ is one draw of `estimator` for the minibatch ELBO.

    Args:
      model: a built `tfvae.models.VAE` whose posterior has a `log_prob` at
        given z (Gaussian families; not an IAF, whose inverse is sequential).
      x: images [batch, H, W, C].
      seed: stateless seed, int32 [2].
      estimator: one of `ESTIMATORS`.
      baseline_samples: draws z' of the control variate b(x).

    Returns:
      Scalar: the minibatch mean of the per-example surrogate.
    """
    q = model.encode(x)
    if estimator == "reparameterization":
        z, log_q = q.experimental_sample_and_log_prob(seed=seed)
        return tf.reduce_mean(_log_joint(model, x, z) - log_q)
    z = tf.stop_gradient(q.sample(seed=seed))                          # [batch, d]
    log_q = q.log_prob(z)                                              # [batch], depends on φ
    signal = tf.stop_gradient(_log_joint(model, x, z) - log_q)         # f(z)
    if estimator == "score_function_baseline":
        z_b = tf.stop_gradient(q.sample(baseline_samples,
                                        seed=tf.random.experimental.stateless_fold_in(seed, 1)))
        baseline = tf.reduce_mean(_log_joint(model, x, z_b) - q.log_prob(z_b), axis=0)
        signal = signal - tf.stop_gradient(baseline)
    elif estimator != "score_function":
        raise ValueError(f"`estimator` must be one of {', '.join(ESTIMATORS)}. "
                         f"Received: estimator={estimator!r}")
    return tf.reduce_mean(signal * log_q)


def gradient_statistics(model, x, num_draws=100, seed=0, estimators=ESTIMATORS,
                        baseline_samples=8):
    """Per-parameter mean and variance of each estimator over `num_draws` draws.

    Args:
      model: see `surrogate`.
      x: one minibatch of images [batch, H, W, C].
      num_draws: independent draws of each estimator (>= 2).
      seed: int; draw r of estimator e uses the stateless seed (seed, 1000 e + r).
      estimators: names from `ESTIMATORS`.
      baseline_samples: draws of the control variate.

    Returns:
      Dict estimator -> {"mean", "variance", "stderr"}: float64 arrays [P]
      over the P encoder parameters (variance with ddof=1).

    Raises:
      ValueError: num_draws < 2 or an unknown estimator.
    """
    if isinstance(num_draws, bool) or not isinstance(num_draws, (int, np.integer)) \
            or num_draws < 2:
        raise ValueError(f"`num_draws` must be an integer >= 2. Received: num_draws={num_draws!r}")
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"`estimators` must be from {', '.join(ESTIMATORS)}. "
                         f"Received: estimators={list(estimators)!r}")
    variables = encoder_variables(model)
    x = tf.convert_to_tensor(x, model.compute_dtype)
    results = {}
    size = sum(int(np.prod(v.shape)) for v in variables)
    for index, estimator in enumerate(estimators):

        @tf.function
        def draw_all(estimator=estimator, index=index):
            # Sums of squares in float64: score-function draws are up to ~1e3
            # times their mean, and float32 would cancel catastrophically.
            total = tf.zeros([size], tf.float64)
            total_sq = tf.zeros([size], tf.float64)
            for r in tf.range(num_draws):
                draw_seed = tf.stack([tf.constant(seed, tf.int32), 1000 * index + r])
                with tf.GradientTape() as tape:
                    value = surrogate(model, x, draw_seed, estimator, baseline_samples)
                grads = tape.gradient(value, variables)
                g = tf.cast(tf.concat([tf.reshape(g, [-1]) for g in grads], 0), tf.float64)
                total, total_sq = total + g, total_sq + g * g
            return total, total_sq

        total, total_sq = (t.numpy() for t in draw_all())
        mean = total / num_draws
        variance = np.maximum(total_sq - num_draws * mean * mean, 0.0) / (num_draws - 1)
        results[estimator] = {"mean": mean, "variance": variance,
                              "stderr": np.sqrt(variance / num_draws)}
    return results


def summarize(statistics, reference="reparameterization"):
    """JSON-able summary: mean per-parameter variance of each estimator and ratios.

    Returns:
      {"num_parameters", "estimators": {name: {"mean_variance",
      "mean_squared_gradient", "variance_ratio"}}} where variance_ratio is
      mean_variance / that of `reference`.
    """
    ref = float(np.mean(statistics[reference]["variance"]))
    out = {"num_parameters": int(len(statistics[reference]["mean"])), "estimators": {}}
    for name, stats in statistics.items():
        mean_variance = float(np.mean(stats["variance"]))
        out["estimators"][name] = {
            "mean_variance": mean_variance,
            "mean_squared_gradient": float(np.mean(stats["mean"] ** 2)),
            "variance_ratio": mean_variance / ref}
    return out
