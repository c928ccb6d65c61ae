"""Annealed importance sampling (AIS) of log p(x), and BDMC bounds, for any model.

AIS (Neal 2001; for VAEs, Wu et al. 2017) moves C chains per example from a
normalized start distribution r(z|x) to the posterior p(z|x) through the
intermediate targets

    f_t(z) = r(z|x)^(1 - beta_t) p(x, z)^beta_t,   0 = beta_0 < ... < beta_T = 1,

with Hamiltonian Monte Carlo (`tfp.mcmc.HamiltonianMonteCarlo`) transitions
leaving each f_t invariant, and accumulates the log weight
sum_t (beta_t - beta_{t-1}) (log p(x, z_{t-1}) - log r(z_{t-1}|x)). The mean
of exp(log weight) over chains is an unbiased estimate of p(x), so the log of
the mean is a stochastic lower bound on log p(x) that tightens as T grows
(book §2.6 gives the one-step case, importance sampling).

BDMC (Grosse et al. 2015) brackets the true log p(x) on data simulated from
the model, (x, z) ~ p(z) p(x|z): the forward chain gives the lower bound, and
the reverse chain, started at the exact posterior sample z and annealed from
beta = 1 back to 0, gives a stochastic upper bound (-log of an unbiased
estimate of 1/p(x)). The gap between them certifies the AIS settings.

Everything goes through the model protocol (`sample_posterior`, `log_joint`;
`prior` and `decode` for BDMC's simulation and the prior start), so the same
code serves `VAE`, its variants and `HierarchicalVAE`. The start
distribution is the diagonal Gaussian moment-matched to draws of the model's
q(z|x) ("posterior", any continuous posterior, flows included: it needs only
samples) or the prior p(z) ("prior").

Step sizes are per example and per latent dimension: a base step per
transition and example, times the start distribution's scale per dimension.
The base steps come from a pilot run (4 chains) whose steps adapt after every
transition towards an acceptance rate of 0.65 (x1.02 or x0.98, as Wu et al.
2017); the estimate's own chains then use those fixed steps, because a step
that adapts to the chain's own past makes the weights biased.
"""

import collections
import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.models import base as base_lib

tfd = tfp.distributions

STARTS = ("posterior", "prior")
SCHEDULES = ("sigmoid", "linear")

AISResult = collections.namedtuple(
    "AISResult", ["log_prob", "log_weights", "acceptance", "step_size"])
AISResult.__doc__ = """What `ais_log_prob` returns.

Attributes:
  log_prob: [B] log of the mean over chains of the AIS weights (a stochastic
    lower bound on log p(x)).
  log_weights: [C, B] each chain's log weight.
  acceptance: scalar, the HMC acceptance rate averaged over transitions,
    chains and examples.
  step_size: scalar, the adapted base step averaged over chains at the end.
"""


def check_supported(model):
    """Raises ValueError unless `model` has continuous latents AIS can move with HMC."""
    from tfvae.models import flow_density, gumbel_vae, m2  # noqa: PLC0415 (cycle-free import)

    unsupported = {flow_density.FlowDensity: "it has no latent variable (its density is exact, "
                   "or for dequantized data a bound over the bin, not a posterior)",
                   gumbel_vae.GumbelVAE: "its latents are discrete (HMC needs continuous z)",
                   m2.M2: "its label y is a discrete latent (summed out exactly)"}
    for cls, why in unsupported.items():
        if isinstance(model, cls):
            raise ValueError(f"AIS does not apply to {type(model).__name__}: {why}. Use "
                             "the importance-sampled estimator (--estimator=is).")


def schedule(num_steps, kind="sigmoid", sharpness=4.0):
    """The annealing temperatures beta_0 = 0 < ... < beta_T = 1, float32 [T + 1].

    Args:
      num_steps: T >= 1, the number of intermediate distributions (transitions).
      kind: "linear", or "sigmoid" (Grosse et al. 2015: a sigmoid of a linear
        ramp over [-sharpness, sharpness], rescaled to [0, 1]; denser near
        both ends, where the targets change fastest).
      sharpness: the sigmoid's half-width.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be an integer >= 1. Received: num_steps={num_steps!r}")
    if kind not in SCHEDULES:
        raise ValueError(f"`schedule` must be one of {SCHEDULES}. Received: schedule={kind!r}")
    ramp = tf.linspace(0.0, 1.0, num_steps + 1)
    if kind == "linear":
        return ramp
    s = tf.sigmoid(sharpness * (2.0 * ramp - 1.0))
    return (s - s[0]) / (s[-1] - s[0])


def start_distribution(model, batch, start="posterior", num_fit_samples=64, seed=(0, 0),
                       start_params=None):
    """r(z|x): batch shape [B], event [D], normalized, samplable, with a density.

    Args:
      model: a model with continuous latents (`check_supported`).
      batch: the model's `Batch` of B examples.
      start: "posterior": the diagonal Gaussian with the mean and standard
        deviation of `num_fit_samples` draws of q(z|x); "prior": p(z).
      num_fit_samples: draws of q for the moment match.
      seed: stateless seed [2].
      start_params: for start="posterior", other parameters [B, P] of the
        model's posterior family to draw from instead of the encoder's (e.g. the
        locally optimized q*, `local_posterior`).
    """
    if start not in STARTS:
        raise ValueError(f"`start` must be one of {STARTS}. Received: start={start!r}")
    if start == "prior":
        if not hasattr(model, "prior"):
            raise ValueError(f"start='prior' needs a model with `prior()`; "
                             f"{type(model).__name__} has none. Use start='posterior'.")
        return _Broadcast(model.prior(), tf.shape(batch.x)[0])
    if start_params is not None:
        z = model.posterior_from_params(start_params).sample(num_fit_samples, seed=seed)
    else:
        z, _ = model.sample_posterior(batch, num_fit_samples, seed)   # [M, B, D]
    mean = tf.reduce_mean(z, axis=0)
    std = tf.math.reduce_std(z, axis=0) + 1e-4
    return tfd.Independent(tfd.Normal(mean, std), 1)


class _Broadcast:
    """A prior p(z) with event [D], used as r(z|x) for B examples (batch [B])."""

    def __init__(self, prior, n):
        self.prior, self.n = prior, n

    def sample(self, num_chains, seed):
        z = self.prior.sample(num_chains * self.n, seed=seed)
        return tf.reshape(z, [num_chains, self.n, -1])

    def log_prob(self, z):
        return self.prior.log_prob(z)

    def stddev(self):
        """Ones [B, D]: the step sizes are not rescaled for a prior start."""
        return tf.ones([self.n, self.prior.event_shape[-1]])


def anneal(model, batch, r, z, betas, leapfrog_steps=10, step_size=0.05, seed=(0, 0),
           steps=None, target_accept=0.65):
    """Runs the chains z [C, B, D] through the targets of `betas`; returns the weights.

    Going from betas[0] to betas[-1]: forward AIS passes 0 -> 1 (z ~ r),
    BDMC's reverse pass 1 -> 0 (z ~ p(z|x)).

    With `steps` None the base step of each chain adapts (a pilot run, see
    `tuned_steps`); an AIS estimate must use given `steps`: a step that
    depends on the chain's own past makes the transitions history-dependent,
    and the weights are then biased (measured on the linear-Gaussian oracle:
    +0.1 to +0.25 nats above the exact log p(x) at T = 500 from the prior).

    Args:
      model, batch: the model and its `Batch` of B examples.
      r: the start distribution (`start_distribution`).
      z: [C, B, D] initial states.
      betas: float32 [T + 1], the temperatures in the order to visit them.
      leapfrog_steps: L, leapfrog steps per HMC transition.
      step_size: the initial base step of the adaptation (times r's scale per
        dimension).
      seed: stateless seed [2].
      steps: None, or the base step of each transition and example [T, B].
      target_accept: the acceptance rate the adaptation aims at.

    Returns:
      (log weights [C, B], final z [C, B, D], mean acceptance, the base step
      of each transition and example, averaged over chains [T, B]).
    """
    scale = tf.stop_gradient(r.stddev())[None]                        # [1, B, D]
    num_steps = tf.shape(betas)[0] - 1
    shape = tf.shape(z)[:2]

    def log_pair(state):
        return model.log_joint(batch, state), r.log_prob(state)

    def body(t, seed, z, log_w, step, accept_sum, used):
        log_p, log_r = log_pair(z)
        log_w = log_w + (betas[t] - betas[t - 1]) * (log_p - log_r)
        beta = betas[t]
        if steps is not None:
            step = steps[t - 1][None] * tf.ones_like(step)

        def target(state):
            lp, lr = log_pair(state)
            return lr + beta * (lp - lr)

        kernel = tfp.mcmc.HamiltonianMonteCarlo(
            target, step_size=step[..., None] * scale, num_leapfrog_steps=leapfrog_steps)
        step_seed, seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z, results = kernel.one_step(z, kernel.bootstrap_results(z), seed=step_seed)
        ratio = results.log_accept_ratio
        accept = tf.exp(tf.minimum(0.0, tf.where(tf.math.is_nan(ratio), -math.inf, ratio)))
        used = used.write(t - 1, tf.reduce_mean(step, axis=0))
        step = step * tf.where(accept > target_accept, 1.02, 0.98)
        return t + 1, seed, z, log_w, step, accept_sum + tf.reduce_mean(accept), used

    _, _, z, log_w, _, accept_sum, used = tf.while_loop(
        lambda t, *_: t <= num_steps, body,
        (tf.constant(1), tf.cast(seed, tf.int32), z, tf.zeros(shape), tf.fill(shape, step_size),
         tf.constant(0.0), tf.TensorArray(tf.float32, size=num_steps)))
    return log_w, z, accept_sum / tf.cast(num_steps, tf.float32), used.stack()


def tuned_steps(model, batch, r, betas, leapfrog_steps, step_size, seed, num_chains=4):
    """The base step per transition and example [T, B] from a pilot run with adaptation.

    The pilot's chains are independent of the estimate's, so the steps it
    finds are fixed in advance for them: the estimate stays unbiased.
    """
    chain_seed, anneal_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    z = r.sample(num_chains, seed=chain_seed)
    return anneal(model, batch, r, z, betas, leapfrog_steps, step_size, anneal_seed)[3]


def ais_log_prob(model, x, context=None, num_chains=16, num_steps=200, leapfrog_steps=10,
                 step_size=0.05, start="posterior", kind="sigmoid", seed=None,
                 start_params=None):
    """AIS estimate of log p(x) [B] with C = `num_chains` chains per example.

    Args:
      model: a model with continuous latents (`check_supported`).
      x: examples [B, ...] or a whole batch (dict / pair).
      context: the condition of a conditional model.
      num_chains: C >= 1.
      num_steps: T >= 1 intermediate distributions (HMC transitions).
      leapfrog_steps: L >= 1 leapfrog steps per transition.
      step_size: initial base step > 0.
      start: "posterior" or "prior" (`start_distribution`).
      kind: the schedule, "sigmoid" or "linear" (`schedule`).
      seed: stateless seed [2]; None draws one from the model's evaluation stream.
      start_params: see `start_distribution` (start="posterior" only).

    Returns:
      An `AISResult`.
    """
    check_supported(model)
    for name, value in (("num_chains", num_chains), ("leapfrog_steps", leapfrog_steps)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    if not step_size > 0:
        raise ValueError(f"`step_size` must be > 0. Received: step_size={step_size!r}")
    schedule(num_steps, kind)                       # checks num_steps and kind
    if start not in STARTS:
        raise ValueError(f"`start` must be one of {STARTS}. Received: start={start!r}")
    batch = _batch(model, x, context)
    if start_params is not None and start != "posterior":
        raise ValueError(f"`start_params` is for start='posterior'. Received: start={start!r}")
    run = _compiled(model, ("ais", num_chains, num_steps, leapfrog_steps, float(step_size),
                            start, kind), _forward)
    log_w, acceptance, step = run(batch.x, batch.context, model.eval_seed(seed), start_params)
    log_prob = tf.reduce_logsumexp(log_w, axis=0) - math.log(num_chains)
    return AISResult(log_prob, log_w, acceptance, step)


def _forward(model, x, context, seed, start_params, num_chains, num_steps, leapfrog_steps,
             step_size, start, kind):
    batch = base_lib.Batch(x, context, None, None)
    fit_seed, pilot_seed, chain_seed, anneal_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    r = start_distribution(model, batch, start, seed=fit_seed, start_params=start_params)
    betas = schedule(num_steps, kind)
    steps = tuned_steps(model, batch, r, betas, leapfrog_steps, step_size, pilot_seed)
    log_w, _, acceptance, used = anneal(model, batch, r, r.sample(num_chains, seed=chain_seed),
                                        betas, leapfrog_steps, seed=anneal_seed, steps=steps)
    return log_w, acceptance, tf.reduce_mean(used[-1])


def bdmc(model, num_examples, num_steps=200, leapfrog_steps=10, step_size=0.05,
         start="posterior", kind="sigmoid", num_chains=1, seed=(0, 0)):
    """Forward and reverse AIS on data simulated from the model: brackets log p(x).

    Draws (x, z) ~ p(z) p(x|z), runs forward AIS (a stochastic lower bound on
    log p(x)) and reverse AIS from the exact posterior sample z (a stochastic
    upper bound); the true log p(x) of the simulated x lies between them in
    expectation, and a small gap certifies the AIS settings (Grosse et al. 2015).

    Args:
      model: a model with `prior()` and `decode(z)` (VAE and its variants).
      num_examples: simulated examples N.
      num_steps, leapfrog_steps, step_size, start, kind: as `ais_log_prob`, for both passes.
      num_chains: forward chains per example (the reverse pass has one exact
        posterior sample per example, so one chain).
      seed: stateless seed [2].

    Returns:
      {"x": simulated x [N, ...], "forward": [N], "reverse": [N],
       "forward_acceptance", "reverse_acceptance"}.
    """
    check_supported(model)
    if not (hasattr(model, "prior") and hasattr(model, "decode")):
        raise ValueError(f"BDMC simulates data from p(z) p(x|z): {type(model).__name__} has no "
                         "`prior()` and `decode(z)`.")
    schedule(num_steps, kind)
    run = _compiled(model, ("bdmc", num_examples, num_chains, num_steps, leapfrog_steps,
                            float(step_size), start, kind), _bdmc)
    x, forward, reverse, forward_accept, reverse_accept = run(tf.cast(seed, tf.int32))
    return {"x": x,
            "forward": tf.reduce_logsumexp(forward, axis=0) - math.log(num_chains),
            "reverse": -reverse[0],
            "forward_acceptance": forward_accept, "reverse_acceptance": reverse_accept}


def _bdmc(model, seed, num_examples, num_chains, num_steps, leapfrog_steps, step_size, start,
          kind):
    z_seed, x_seed, fit_seed, chain_seed, forward_seed, reverse_seed, pilot_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 7))
    z = model.prior().sample(num_examples, seed=z_seed)
    x = tf.cast(model.decode(z).sample(seed=x_seed), model.compute_dtype)
    batch = base_lib.Batch(x, None, None, None)
    r = start_distribution(model, batch, start, seed=fit_seed)
    betas = schedule(num_steps, kind)
    steps = tuned_steps(model, batch, r, betas, leapfrog_steps, step_size, pilot_seed)
    forward, _, forward_accept, _ = anneal(model, batch, r, r.sample(num_chains, seed=chain_seed),
                                           betas, leapfrog_steps, seed=forward_seed, steps=steps)
    # Reverse: from the exact posterior sample, beta 1 -> 0, with the forward pass's
    # steps in reverse order; the weight estimates r's normalizer / p(x) = 1 / p(x),
    # so minus its log is a stochastic upper bound on log p(x).
    reverse, _, reverse_accept, _ = anneal(model, batch, r, z[None], tf.reverse(betas, [0]),
                                           leapfrog_steps, seed=reverse_seed,
                                           steps=tf.reverse(steps, [0]))
    return x, forward, reverse, forward_accept, reverse_accept


def _batch(model, x, context):
    batch = model.read_batch(x, check_values=True)
    return batch._replace(context=context) if context is not None else batch


def _compiled(model, key, fn):
    """`fn(model, *tensors, *key[1:])` as a `tf.function` of the tensors, cached on
    the model per `key` (one trace per settings and input shape)."""
    cache = model.__dict__.setdefault("_tfvae_ais_functions", {})
    if key not in cache:
        settings = key[1:]
        cache[key] = tf.function(lambda *tensors: fn(model, *tensors, *settings),
                                 reduce_retracing=True)
    return cache[key]
