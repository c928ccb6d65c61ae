"""The best posterior of the model's own family for each example (book §2.7, §1.8).

An amortized encoder gives q_phi(z|x) = q(z; lambda_phi(x)); the family's best
member for one x is q(z; lambda*) with lambda* = argmax ELBO(x; lambda), found
by gradient ascent on the per-example parameters lambda (the latent head's
output: the base family's parameters and, for a flow posterior, the flow's
per-example inputs; the flow's shared weights and the generative model stay
fixed). Starting from lambda_phi(x), Cremer et al. (2018) split the
inference gap

    log p(x) - ELBO(q_phi) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q_phi)],

the approximation gap (the family) and the amortization gap (the encoder).
The same ascent is the E-step of variational EM with local parameters
(book appendix A.2.2).

Works for models with `posterior_params(x, context)` and
`posterior_from_params(params)`: `VAE` and its variants with continuous
latents, and `HierarchicalVAE`, whose per-example parameters are what its
stack's posterior reads of x (`posterior_features`: the bottom-up heads'
outputs; the top-down networks, like a flow's weights, stay shared).
"""

import tensorflow as tf

from tfvae.evaluation import ais as ais_lib


def check_supported(model):
    """Raises ValueError unless `model` exposes per-example posterior parameters."""
    ais_lib.check_supported(model)               # continuous latents
    if not (hasattr(model, "posterior_params") and hasattr(model, "posterior_from_params")):
        raise ValueError(f"{type(model).__name__} has no per-example posterior parameters "
                         "(`posterior_params`, `posterior_from_params`); the local posterior "
                         "is defined for VAE, its variants and HierarchicalVAE.")


def elbo(model, batch, params, num_samples, seed):
    """ELBO(x; lambda) [B]: E_q[log p(x, z) - log q(z)] at `num_samples` draws of
    q = `model.posterior_from_params(params)` (params [B, P])."""
    q = model.posterior_from_params(params)
    z, log_q = q.experimental_sample_and_log_prob(num_samples, seed=seed)
    return tf.reduce_mean(model.log_joint(batch, z) - log_q, axis=0)


def optimize(model, batch, params, num_steps=200, learning_rate=0.01, num_samples=8,
             seed=(0, 0)):
    """Per-example gradient ascent (Adam, linear decay) on the ELBO over the posterior
    parameters.

    Each example's parameters see only their own ELBO's gradient (the
    objective is a sum over the batch), so the examples are optimized
    independently; the model's weights are not changed.

    Args:
      model: a supported model (`check_supported`).
      batch: the model's `Batch` of B examples.
      params: the starting parameters [B, P] (e.g. `model.posterior_params(x)`).
      num_steps: Adam steps.
      learning_rate: Adam's initial step size, decayed linearly to 0.
      num_samples: draws of z per step for the ELBO's gradient.
      seed: stateless seed [2]; each step draws its own noise.

    Returns:
      (optimized parameters [B, P], the batch-mean ELBO estimate of each step
      [num_steps]).
    """
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-8
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), num_steps)

    def body(t, params, m, v, history):
        with tf.GradientTape() as tape:
            tape.watch(params)
            value = elbo(model, batch, params, num_samples, seeds[t])
            loss = -tf.reduce_sum(value)
        grad = tape.gradient(loss, params)
        grad = tf.where(tf.math.is_finite(grad), grad, 0.0)
        m = beta_1 * m + (1 - beta_1) * grad
        v = beta_2 * v + (1 - beta_2) * tf.square(grad)
        step = tf.cast(t + 1, tf.float32)
        m_hat = m / (1 - beta_1 ** step)
        v_hat = v / (1 - beta_2 ** step)
        # Linear decay to 0: the noise floor of a stochastic gradient shrinks with it.
        rate = learning_rate * (1.0 - step / (num_steps + 1.0))
        params = params - rate * m_hat / (tf.sqrt(v_hat) + epsilon)
        return t + 1, params, m, v, history.write(t, tf.reduce_mean(value))

    params = tf.convert_to_tensor(params, tf.float32)
    zeros = tf.zeros_like(params)
    _, params, _, _, history = tf.while_loop(
        lambda t, *_: t < num_steps, body,
        (tf.constant(0), params, zeros, zeros, tf.TensorArray(tf.float32, size=num_steps)))
    return tf.stop_gradient(params), history.stack()
