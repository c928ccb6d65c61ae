"""What every stochastic layer of a hierarchical VAE shares (book §4.1-4.2).

A hierarchical VAE is a top-down generative stack

    p(x, z_1..L) = p(z_L) p(z_{L-1}|z_L) ... p(z_1|z_2) p(x|z_1, ...)

whose layers ("cells") each return a `LayerOutput(z, q, p, kl)`: the sample
z_l, the posterior q_l and conditional prior p_l it was drawn from/judged by,
and the per-example KL term of that layer. The total rate of the ELBO is the
sum of the layers' KL terms. With `analytic=True` and Gaussian q_l, p_l that
are both conditioned on the same upper sample, kl is KL(q_l || p_l) in closed
form (an unbiased single-sample estimate of the layer's share of
E_q[log q(z)/p(z)]); otherwise kl = log q_l(z_l) - log p_l(z_l) at the sample,
which is also what the importance-sampled log p(x) needs.
"""

import collections

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.objectives import elbo as objectives

tfd = tfp.distributions

LayerOutput = collections.namedtuple("LayerOutput", ["z", "q", "p", "kl", "analytic"],
                                     defaults=(False,))
"""One stochastic layer: z [N, *shape], q and p (event shape `shape`), kl [N], and
whether kl is the closed-form KL(q || p) (`analytic`, a Python bool) or the
single-sample log q(z) - log p(z); `kl_groups` splits kl the same way."""

INFERENCE = ("bottom_up", "ladder", "bidirectional")
# Log-scales are clipped to [-9, 9]: exp(-9) ~ 1e-4 keeps 1/sigma^2 finite in the
# ladder merge and the KL; exp(9) ~ 8e3 keeps an untrained layer's scale (a Dense
# output fed samples of the layer below) from overflowing to inf and log p to -inf.
_LOG_SCALE_RANGE = (-9.0, 9.0)

def positive_ints(value, name):
    """`value` as a non-empty tuple of positive ints, or a ValueError naming `name`."""
    try:
        units = tuple(int(u) for u in value)
    except (TypeError, ValueError):
        units = ()
    if not units or any(u < 1 for u in units):
        raise ValueError(f"`{name}` must be a non-empty sequence of positive integers. "
                         f"Received: {name}={value!r}")
    return units


def check_inference(inference, allowed=INFERENCE):
    if inference not in allowed:
        raise ValueError(f"`inference` must be one of {', '.join(allowed)}. "
                         f"Received: inference={inference!r}")
    return inference


def gaussian(loc, log_scale, event_ndims):
    """Diagonal Gaussian with event shape loc.shape[-event_ndims:]."""
    scale = tf.exp(tf.clip_by_value(log_scale, *_LOG_SCALE_RANGE))
    return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=event_ndims)


def precision_weighted_merge(loc_a, scale_a, loc_b, scale_b):
    """The product of two Gaussians, renormalized (Sønderby et al. 2016, eq. 18-19).

    sigma^2 = 1 / (sigma_a^-2 + sigma_b^-2),  mu = sigma^2 (mu_a sigma_a^-2 + mu_b sigma_b^-2).

    Args:
      loc_a, scale_a: the bottom-up (data-dependent) estimate [..., d].
      loc_b, scale_b: the top-down (prior) estimate [..., d].

    Returns:
      (loc, scale) [..., d] of the ladder posterior.
    """
    precision_a = tf.math.reciprocal(tf.square(scale_a))
    precision_b = tf.math.reciprocal(tf.square(scale_b))
    variance = tf.math.reciprocal(precision_a + precision_b)
    loc = variance * (loc_a * precision_a + loc_b * precision_b)
    return loc, tf.sqrt(variance)


def normal_parts(dist):
    """(loc, scale) of an `Independent(Normal)` (our Gaussian layers)."""
    return dist.distribution.loc, dist.distribution.scale


def draw(q, seed, flow=None, context=None, mean=False):
    """Draws z ~ q, optionally pushed through an IAF conditioned on `context`.

    Args:
      q: base posterior, an `Independent(Normal)` with event shape [d] or [h, w, c].
      seed: stateless seed [2].
      flow: optional `tfvae.flows.iaf.IAF` acting on the last axis (per
        pixel for spatial latents: Kingma et al.'s IAF with 1x1 ARconvs).
      context: flow context h [N, ..., context_size], same leading shape as z.
      mean: the posterior's summary point (the base mean, pushed through
        the flow) instead of a sample.

    Returns:
      (z [N, *event], q (the flow posterior with a flow), log q(z) [N] or
      None without a flow: computed from q only if needed).
    """
    if flow is None:
        return (q.mean() if mean else q.sample(seed=seed)), q, None
    loc, scale = normal_parts(q)
    d = flow.latent_size
    # Independent(Normal), not MultivariateNormalDiag: its noise for row i does not
    # depend on the number of rows, so the IS estimate's first K samples are the same
    # for any chunk size (an exported graph with a tensor K uses larger chunks).
    flat_base = tfd.Independent(tfd.Normal(tf.reshape(loc, [-1, d]), tf.reshape(scale, [-1, d])),
                                reinterpreted_batch_ndims=1)
    flat_q = tfd.TransformedDistribution(
        flat_base, flow.bijector(tf.reshape(context, [-1, flow.context_size])))
    if mean:
        flat_z = flat_q.bijector.forward(flat_base.mean())
        flat_log_q = flat_q.log_prob(flat_z)
    else:
        # The density of the flow's own sample from the forward log-det (§3.2.2).
        flat_z, flat_log_q = flat_q.experimental_sample_and_log_prob(seed=seed)
    z = tf.reshape(flat_z, tf.shape(loc))
    log_q = tf.reduce_sum(tf.reshape(flat_log_q, [tf.shape(loc)[0], -1]), axis=-1)   # [N]
    q_full = tfd.Independent(tfd.BatchReshape(flat_q, tf.shape(loc)[:-1]),
                             reinterpreted_batch_ndims=len(loc.shape) - 2)
    return z, q_full, log_q


def base_scale(q, z):
    """Standard deviations of q's Gaussian base (before any flow), shaped like z."""
    if isinstance(q.distribution, tfd.Normal):
        return q.distribution.scale
    flat_base = q.distribution.distribution.distribution   # Independent(BatchReshape(flow(base)))
    return tf.reshape(flat_base.stddev(), tf.shape(z))


def layer_output(z, q, p, log_q=None, analytic=True):
    """The `LayerOutput` of a drawn z: KL(q || p) in closed form if `analytic`
    and there is no flow (log_q None), else log q(z) - log p(z)."""
    if log_q is None and analytic:
        return LayerOutput(z, q, p, tfd.kl_divergence(q, p), analytic=True)
    if log_q is None:
        log_q = q.log_prob(z)
    return LayerOutput(z, q, p, log_q - p.log_prob(z), analytic=False)


class StackPosterior:
    """q(z_1..L | x) of a stack at given per-example parameters (book §2.7, §4.1).

    The parameters are the stack's `posterior_features` of B examples,
    flattened and concatenated [B, P]; the stack's weights are shared by all
    examples. Any [B, P] is a member of the stack's posterior family, which is
    what the per-example optimization of `tfvae.evaluation.local_posterior`
    moves in. Only draws are offered (the latents' density at other points
    would need each layer's IAF inverted).

    Args:
      stack: an `MLPStack` or `ResNetStack`.
      params: [B, P], P = the sum of the sizes of `stack.feature_shapes`.
    """

    def __init__(self, stack, params):
        self.stack = stack
        self.params = tf.convert_to_tensor(params, tf.float32)

    def _features(self, num_samples):
        """The features of S copies of the batch, sample-major: S * B rows each."""
        shapes = self.stack.feature_shapes
        rows = num_samples * tf.shape(self.params)[0]
        parts = tf.split(tf.tile(self.params, [num_samples, 1]), [flat_size(s) for s in shapes],
                         axis=-1)
        return [tf.reshape(part, [rows, *shape]) for part, shape in zip(parts, shapes)]

    def experimental_sample_and_log_prob(self, num_samples, seed):
        """z_1..L ~ q flattened and concatenated [S, B, D], and log q(z_1..L|x) [S, B].

        Args:
          num_samples: S, a scalar.
          seed: stateless seed [2].
        """
        outputs, _ = self.stack.infer_from_features(self._features(num_samples), seed,
                                                    analytic=False)
        n = tf.shape(self.params)[0]
        z = tf.concat([tf.reshape(o.z, [num_samples * n, -1]) for o in outputs], axis=-1)
        # MC layer terms are log q_l(z_l) - log p_l(z_l): add log p_l back for log q_l.
        log_q = tf.add_n([o.kl + o.p.log_prob(o.z) for o in outputs])
        return (tf.reshape(z, [num_samples, n, -1]), tf.reshape(log_q, [num_samples, n]))

    def sample(self, num_samples, seed):
        """z_1..L ~ q flattened and concatenated [S, B, D]."""
        return self.experimental_sample_and_log_prob(num_samples, seed)[0]


def kl_groups(output, num_groups):
    """Per-group KL [N, num_groups] of a layer without a flow (free bits, §2.8.1).

    The layer's latent elements (flattened in row-major order) are cut into
    `num_groups` contiguous groups; the groups sum to `output.kl`, with the
    estimator `output.kl` used: closed form per dimension where the layer's
    KL is analytic, the per-dimension single-sample log-ratio otherwise. (Under
    bottom-up inference p(z_l|z_{l+1}) depends on the z_l being integrated
    over, so a per-dimension closed form there is biased, §4.1.)
    """
    if num_groups == 1:
        return output.kl[:, tf.newaxis]
    q_loc, q_scale = normal_parts(output.q)
    p_loc, p_scale = normal_parts(output.p)
    q_dims, p_dims = tfd.Normal(q_loc, q_scale), tfd.Normal(p_loc, p_scale)
    if output.analytic:
        per_dim = tfd.kl_divergence(q_dims, p_dims)
    else:
        per_dim = q_dims.log_prob(output.z) - p_dims.log_prob(output.z)
    per_dim = tf.reshape(per_dim, [tf.shape(per_dim)[0], flat_size(per_dim.shape[1:])])
    return objectives.group_sum(per_dim, num_groups)


def flat_size(shape):
    """Number of elements of one latent of `shape`."""
    size = 1
    for d in shape:
        size *= int(d)
    return size

