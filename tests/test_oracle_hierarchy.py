"""Hierarchical importance sampling against an exact marginal by grid quadrature.

`HierarchicalVAE.log_prob` (book §2.6, §4.1) estimates

    log p(x) = log E_q[p(x, z_1, z_2) / q(z_1, z_2 | x)]

with the stack's posterior pass. With tiny latents (z_1, z_2 of one number
each, or a 2-D z_1: three dimensions at most) the same marginal is an
integral on a grid:

    log p(x) = log sum_grid p(x | z_1, z_2) p(z_1 | z_2) p(z_2) * cell volume,

evaluated in float64 with a logsumexp, from the generative model only:
`stack.prior_log_prob` (the top-down conditional priors) and
`stack.generate(..., latents=...)` (the logits of p(x|z)), with the
Bernoulli log-likelihood written out here. No posterior, flow or IS code is
on the oracle's path, and it holds for any stack weights: the stacks are
untrained, with random weights from explicit seeds, so that the posterior is
neither the prior nor the proposal (an ELBO gap of 0.04-7 nats) while the
proposal stays wide enough for the importance weights to have a finite
variance (the tolerances rely on it).
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp

from tfvae.distributions import families
from tfvae.hierarchy import base
from tfvae.hierarchy import mlp
from tfvae.hierarchy import resnet
from tfvae.models import hvae

SHAPE = (2, 2, 1)
# Four binary 2x2 images (of the 16).
X = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0], [1, 0, 0, 0]],
             "float32").reshape(-1, *SHAPE)
# Grid: +-9 holds every prior's mass here up to float32 rounding (|log mass| < 2e-7,
# checked in each test); cells of 0.05 (2-D) / 0.2 (3-D) resolve posteriors of standard
# deviation ~0.3-1 (`test_quadrature_is_converged_in_the_grid_spacing`).
LIMIT = 9.0
POINTS = {2: 361, 3: 91}
K_LARGE = 50_000

# Each case: (stack kind, inference, latent sizes / channels, IAF steps). The ResNet
# has 2x2 images, stride-2 stem and one channel: its z_1, z_2 are 1x1x1 (one number each).
CASES = {
    "mlp_bottom_up": ("mlp", "bottom_up", (1, 1), 0),
    "mlp_ladder": ("mlp", "ladder", (1, 1), 0),
    "mlp_bidirectional": ("mlp", "bidirectional", (1, 1), 0),
    # A 2-D z_1 so the IAF is truly autoregressive (the MADE's second output sees z_1's
    # first coordinate); 3-D quadrature.
    "mlp_bidirectional_iaf": ("mlp", "bidirectional", (2, 1), 1),
    "resnet_bottom_up": ("resnet", "bottom_up", 1, 0),
    "resnet_ladder": ("resnet", "ladder", 1, 0),
    # A 1-channel IAF: its shift and gate come from the context only (per pixel).
    "resnet_bidirectional_iaf": ("resnet", "bidirectional", 1, 1),
}

# Gains of the random weights per layer (by name prefix): N(0, gain^2 / fan_in) kernels
# and N(0, (0.3 gain)^2) biases; 1 for the hidden layers. The likelihood heads are
# sharpened (an informative p(x|z)), the ResNet's z -> state branch (scaled by 0.1 in
# the stack) amplified so that x depends on z, the prior and posterior heads kept small.
_GAINS = {"decoder_out": 1.5, "out": 1.5, "prior_head": 0.3, "down_c": 0.3, "down_d": 3.0,
          "up_head": 0.3, "up_a": 0.2, "q_down_head": 0.3}
# Added to the bottom-up log-scales: an over-dispersed proposal keeps the importance
# weights' variance finite (a ladder posterior is narrower than its prior: merged with
# a bottom-up estimate of scale ~1 it would be ~1/sqrt(2) of it, the edge of finite variance).
_Q_LOG_SCALE_OFFSET = 0.5


def _randomize(stack, seed):
    """Sets every weight of the stack from `seed`.

    The IAFs' MADEs keep their seeded init but with doubled output weights and a
    gate bias of 1 (sigma ~ 0.73, not 0.88): a step far enough from the identity
    that a wrong log-det moves the IS estimate by ~0.1 nats.
    """
    rng = np.random.default_rng(seed)
    for flow in stack._flows:
        for made in flow.mades:
            made.output_kernel.assign(2.0 * made.output_kernel.numpy())
            made.output_bias.assign(np.tile([0.0, 1.0], (made.event_size, 1)))   # (m, s)
    for weight in stack.weights:
        layer = weight.path.split("/")[-2]
        if layer.startswith("made"):
            continue
        gain = next((g for prefix, g in _GAINS.items() if layer.startswith(prefix)), 1.0)
        if weight.path.endswith("kernel"):
            # fan_in: c_in for dense layers and the ResNet's convs on 1x1 maps (only the
            # centre tap of a 3x3 kernel acts), 4 c_in for its stem (the 2x2 pixels).
            fan_in = weight.shape[-2] * (4 if layer == "stem" else 1)
            weight.assign(rng.normal(size=weight.shape) * gain / math.sqrt(fan_in))
        else:                                              # biases and the ResNet's `top`
            weight.assign(rng.normal(size=weight.shape) * 0.3 * gain)
    if isinstance(stack, mlp.MLPStack):
        for l, head in enumerate(stack._up_heads):
            d = stack.latent_sizes[l]
            bias = head.bias.numpy()
            bias[d:2 * d] += _Q_LOG_SCALE_OFFSET                 # [loc, log_scale, context]
            head.bias.assign(bias)
        for l, head in enumerate(stack._q_down_heads):
            # The bidirectional top-down correction starts as the prior's head: q(z_l|...)
            # is p(z_l|z_{l+1}) shifted and widened by the bottom-up terms.
            d = stack.latent_sizes[l]
            kernel, bias = head.get_weights()
            prior_kernel, prior_bias = stack._prior_heads[l].get_weights()
            kernel[:, :2 * d], bias[:2 * d] = prior_kernel, prior_bias
            head.set_weights([kernel, bias])
    else:
        hid, c = stack._up_split[0], stack.latent_channels
        for conv in stack._up_a:                           # [hid, loc, log_scale, context]
            bias = conv.bias.numpy()
            bias[hid + c:hid + 2 * c] += _Q_LOG_SCALE_OFFSET
            conv.bias.assign(bias)
        if stack.inference == "bidirectional":
            p_at = stack._down_split[0]                    # [hid, p params, q_down, ctx]
            for conv in stack._down_c:
                kernel, bias = conv.get_weights()
                kernel[..., p_at + 2 * c:p_at + 4 * c] = kernel[..., p_at:p_at + 2 * c]
                bias[p_at + 2 * c:p_at + 4 * c] = bias[p_at:p_at + 2 * c]
                conv.set_weights([kernel, bias])


def _model(kind, inference, sizes, iaf_steps, seed=7):
    likelihood = families.Bernoulli(SHAPE)
    if kind == "mlp":
        stack = mlp.MLPStack(SHAPE, sizes, (16,) * len(sizes), likelihood.params_size,
                             inference=inference, iaf_steps=iaf_steps, iaf_hidden_units=(8,),
                             iaf_context_size=4, seed=1, name="stack")
    else:
        stack = resnet.ResNetStack(SHAPE, 1, num_layers=2, hidden_channels=8,
                                   latent_channels=sizes, inference=inference,
                                   weight_norm=False, iaf_steps=iaf_steps,
                                   iaf_hidden_units=(8,), context_channels=4, seed=1,
                                   name="stack")
    model = hvae.HierarchicalVAE(stack, likelihood, seed=0)
    model(X[:1])
    _randomize(stack, seed)
    return model


def _bernoulli_log_prob(x, logits):
    """log p(x | logits) [B, G] for x [B, P], logits [G, P], in float64."""
    logits = logits.astype(np.float64)
    return x.reshape(len(x), -1).astype(np.float64) @ logits.T - np.logaddexp(0, logits).sum(-1)


def _quadrature(stack, x, points=None, limit=LIMIT, chunk=200_000):
    """Exact log p(x) [B] on a product grid over all latent dimensions (<= 3).

    Returns:
      (log p(x) [B], log of the prior mass on the grid: ~0 when the grid holds p(z)).
    """
    shapes = stack.latent_shapes
    sizes = [base.flat_size(s) for s in shapes]
    dims = sum(sizes)
    points = points or POINTS[dims]
    axis = np.linspace(-limit, limit, points)
    log_cell = dims * math.log(axis[1] - axis[0])
    grid = np.stack(np.meshgrid(*[axis] * dims, indexing="ij"), -1).reshape(-1, dims)
    log_joint, log_prior = [], []
    for start in range(0, len(grid), chunk):
        part = grid[start:start + chunk].astype("float32")
        latents = [z.reshape(-1, *shape) for z, shape in
                   zip(np.split(part, np.cumsum(sizes)[:-1], axis=1), shapes)]
        prior = stack.prior_log_prob(latents).numpy().astype(np.float64)              # [G]
        logits = stack.generate(len(part), tf.constant([0, 0]), latents=latents).numpy()
        log_joint.append(_bernoulli_log_prob(x, logits) + prior)                   # [B, G]
        log_prior.append(prior)
    return (logsumexp(np.concatenate(log_joint, 1), axis=1) + log_cell,
            logsumexp(np.concatenate(log_prior)) + log_cell)


def _is_estimates(model, x, seed):
    """IS estimates: K = 1 and K = 100 replicated (x tiled: every row draws its own z), K large.

    Returns:
      (K=1 estimates [R1, B], K=100 estimates [R100, B], the K_LARGE estimate [B]).
    """
    b = len(x)
    tiled = lambda r: np.tile(x, [r, 1, 1, 1])
    k1 = model.log_prob(tiled(2000), num_samples=1, seed=seed).numpy().reshape(-1, b)
    k100 = model.log_prob(tiled(64), num_samples=100, seed=seed + 1).numpy().reshape(-1, b)
    large = model.log_prob(x, num_samples=K_LARGE, chunk_size=5000, seed=seed + 2).numpy()
    return k1, k100, large


@pytest.mark.parametrize("case", CASES)
def test_importance_sampled_log_prob_converges_to_the_quadrature(case):
    """IS over the joint of both layers -> the quadrature marginal; the ELBO stays below it."""
    model = _model(*CASES[case])
    exact, log_mass = _quadrature(model.stack, X)
    # Grid coverage: p(x|z) <= 1, so the posterior mass off the grid is at most the
    # prior's, 1 - exp(log_mass), over p(x): below 1e-4 (a bias below 1e-4 nats).
    assert np.all(abs(log_mass) < 1e-4 * np.exp(exact)), (log_mass, exact)

    k1, k100, large = _is_estimates(model, X, np.array([11, 12]))
    err_1, err_100, err_large = k1.mean(0) - exact, k100.mean(0) - exact, large - exact
    # The estimate's standard error scales as sqrt(Var(w) / (K E[w]^2)): measured at
    # K = 100 over 64 replicates and scaled to K_LARGE (the delta method).
    se_large = k100.std(0) * math.sqrt(100 / K_LARGE)
    print(f"{case}: exact {exact}\n  error K=1 {err_1}\n  K=100 {err_100}\n"
          f"  K={K_LARGE} {err_large} (se {se_large})")
    # K = 1 is the single-sample ELBO: clearly below log p(x) (a non-trivial posterior:
    # a mean gap of at least 0.03 nats; 2000 replicates give a standard error < 0.01)
    # and far from it compared with K_LARGE.
    assert np.mean(err_1) < -0.03, err_1
    assert np.all(np.abs(err_large) < np.abs(err_1)), (err_large, err_1)
    assert np.mean(np.abs(err_100)) < np.mean(np.abs(err_1)), (err_100, err_1)
    # K_LARGE: within 4 standard errors plus 2e-3 (float32 log-weights and quadrature
    # rounding), and below 0.02 nats in absolute terms.
    assert np.all(np.abs(err_large) < 4 * se_large + 2e-3), (err_large, se_large)
    assert np.all(np.abs(err_large) < 0.02), err_large

    # ELBO <= log p(x) in expectation: the mean of 1000 ELBO estimates (with the
    # analytic per-layer KLs where the stack allows them) is below log p(x) by more
    # than 3 standard errors for every image.
    elbo = model.elbo(np.tile(X, [1000, 1, 1, 1]), seed=np.array([13, 14])).numpy()
    elbo = elbo.reshape(1000, -1)
    elbo_se = elbo.std(0) / math.sqrt(1000)
    assert np.all(elbo.mean(0) + 3 * elbo_se < exact), (elbo.mean(0), exact, elbo_se)


@pytest.mark.parametrize("case", ["mlp_bidirectional", "mlp_bidirectional_iaf",
                                  "resnet_bidirectional_iaf"])
def test_quadrature_is_converged_in_the_grid_spacing(case):
    """The oracle itself: a 4/3 finer grid changes log p(x) by < 1e-4 nats, and the
    grid's prior mass is 1 (the integrand is smooth and the grid wide enough)."""
    model = _model(*CASES[case])
    dims = sum(base.flat_size(s) for s in model.stack.latent_shapes)
    coarse, _ = _quadrature(model.stack, X)
    fine, log_mass = _quadrature(model.stack, X, points=(4 * POINTS[dims]) // 3)
    np.testing.assert_allclose(coarse, fine, rtol=0, atol=1e-4)
    assert abs(log_mass) < 1e-6


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
def test_prior_log_prob_is_the_generative_factorization(kind):
    """`prior_log_prob` = sum_l log p_l(z_l) with the p_l of the posterior pass at its
    own samples (the top-down pass conditions on the same z_{l+1}, ...), and it is a
    normalized density of (z_1, z_2) (the quadrature tests check the mass on a grid)."""
    model = _model(kind, "ladder", (1, 1) if kind == "mlp" else 1, 0)
    outputs, _ = model.stack.infer(X, tf.constant([3, 4]), analytic=False)
    expected = tf.add_n([o.p.log_prob(o.z) for o in outputs])
    np.testing.assert_allclose(model.stack.prior_log_prob([o.z for o in outputs]), expected,
                               rtol=1e-5, atol=1e-5)
