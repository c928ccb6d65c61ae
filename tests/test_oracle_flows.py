"""Flow posteriors and learned priors against exact log p(x) (book §2.6, §3.2-3.4, §4.4).

Oracles, all on the linear-Gaussian decoder of `tests/linear_gaussian.py`
(p(x|z) = N(W z + b, sigma^2 I), z in R^2):

- standard-normal prior: log p(x) and the posterior N(A x + c, Sigma) in
  closed form (`lg.exact_log_prob`, `lg.exact_posterior`);
- a learned flow prior (MAF, RealNVP): log p(x) = log int p(x|z) p(z) dz by
  2-D grid quadrature with the prior's own `log_prob` (`lg.quadrature_log_prob`);
- the VampPrior p(z) = (1/K) sum_k N(m_k, S_k) with full-covariance
  components: the Gaussian-mixture marginal in closed form,
  p(x) = (1/K) sum_k N(x; W m_k + b, W S_k W^T + sigma^2 I), in float64.

The IS estimate (`VAE.log_prob`) must converge to these as K grows, and a
flow that can represent the exact posterior must make the ELBO exact.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from tests import linear_gaussian as lg
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.distributions import vamp
from tfvae.flows import density
from tfvae.flows import householder
from tfvae.flows import iaf
from tfvae.flows import planar
from tfvae.flows import sylvester
from tfvae.models import vamp_vae

WEIGHT, BIAS, X_ALL = lg.problem()
X = X_ALL[:4]
A, C, SCALE_TRIL = lg.exact_posterior(WEIGHT, BIAS)   # p(z|x) = N(A x + C, L L^T)
COV = SCALE_TRIL @ SCALE_TRIL.T                        # correlation -0.65
EXACT = lg.exact_log_prob(WEIGHT, BIAS, X)
D = lg.Z_DIM
K_LARGE = 20_000
# The planar and Sylvester maps are linear only in the limit: tanh(eps t) = eps t (1 -
# (eps t)^2 / 3 + ...), so at eps = 1e-3 and |t| < 5 base sds (~4) they are linear to
# ~1e-5 relative: over 16000 draws every log-weight is within 1.1e-4 of log p(x)
# (planar; 6e-6 for the others), inside the 1e-3 tolerance below (float32 values).
EPS = 1e-3


def _images(x):
    return tf.constant(x.reshape(-1, lg.X_DIM, 1, 1), tf.float32)


def _flow_layer(name):
    if name == "iaf":
        # relu hidden units: relu(t) - relu(-t) = t lets the MADE be exactly linear.
        return iaf.IAF(D, 1, hidden_units=(4,), context_size=3, activation="relu", seed=5)
    if name == "planar":
        return planar.PlanarFlow(D, 1)
    if name == "householder":
        return householder.HouseholderFlow(D, 1)
    return sylvester.SylvesterFlow(D, 1, variant="orthogonal", num_ortho_vectors=D)


def _model(name, loc_kernel, loc_bias, log_scale, flow_kernel, flow_bias):
    """A VAE with q(z|x) = flow(N(loc_kernel^T x + loc_bias, diag(exp(log_scale))^2))."""
    flow = _flow_layer(name)
    latent = latents.LatentLayer(families.DiagonalGaussian(D), flow=flow)
    kernel = np.concatenate([loc_kernel, np.zeros((lg.X_DIM, D)), flow_kernel], axis=1)
    bias = np.concatenate([loc_bias, log_scale, flow_bias])
    return lg.build_model(WEIGHT, BIAS, latent, kernel, bias, analytic_kl=False)


def _exact_flow_posterior(name, eps=EPS):
    """A flow model whose q(z|x) is the exact posterior N(A x + C, COV) (IAF, Householder),
    or its eps -> 0 limit (planar, Sylvester; see EPS), by hand-set head and flow weights.

    Each construction maps the diagonal base z0 = mu0(x) + s * e through an affine map
    z = M z0 + t with M diag(s)^2 M^T = COV and M mu0(x) + t = A x + C.
    """
    flow_size = _flow_layer(name).params_size
    flow_kernel, flow_bias = np.zeros((lg.X_DIM, flow_size)), np.zeros(flow_size)
    if name == "householder":
        # COV = U diag(lam) U^T with U a reflection (orthogonal, det -1 in 2-D, so
        # symmetric): H = U = I - 2 v v^T / |v|^2, v along any column of I - H;
        # H is its own inverse, so the base mean is H (A x + C).
        lam, u = np.linalg.eigh(COV)
        if np.linalg.det(u) > 0:
            u[:, 1] *= -1
        reflector = np.eye(D) - u
        flow_bias = reflector[:, np.argmax(np.linalg.norm(reflector, axis=0))]
        model = _model(name, (u @ A).T, u @ C, 0.5 * np.log(lam), flow_kernel, flow_bias)
    elif name == "iaf":
        # One step z = sig * z0 + (1 - sig) m(z0), gate sig = sigmoid(2) (the output bias
        # of s, context 0): m_1 = 0 and m_2 = a z0_1 through two relu units of degree 1
        # (z0_1 -> +-z0_1, output weights +-a). Then z_1 = sig z0_1 and
        # z_2 = sig z0_2 + (1 - sig) a z0_1: lower triangular, matched to chol(COV) = L.
        sig = 1 / (1 + math.exp(-2.0))
        s1, s2 = SCALE_TRIL[0, 0] / sig, SCALE_TRIL[1, 1] / sig
        a = SCALE_TRIL[1, 0] / ((1 - sig) * s1)
        to_base = np.array([[1 / sig, 0.0], [-(1 - sig) * a / sig ** 2, 1 / sig]])
        model = _model(name, (to_base @ A).T, to_base @ C, np.log([s1, s2]), flow_kernel,
                       flow_bias)
        made = model.latent.flow.mades[0]
        kernel = np.zeros((D, 4))
        kernel[0, 2], kernel[0, 3] = 1.0, -1.0         # hidden degrees [0, 0, 1, 1]
        out = np.zeros((4, D, 2))
        out[2, 1, 0], out[3, 1, 0] = a, -a              # [unit, variable, (m, s)]
        made._kernels[0].assign(kernel)
        made._biases[0].assign(np.zeros(4))
        made.context_kernel.assign(np.zeros_like(made.context_kernel))
        made.output_kernel.assign(out)
        made.output_bias.assign(np.array([[0.0, 2.0], [0.0, 2.0]]))
    elif name == "planar":
        # f(z) = z + u tanh(w^T z + b), w = eps e_1, b = -eps mu0_1(x), and w^T u = a*, the
        # fixed point of the invertibility constraint m(a) = -1 + softplus(a) (u_hat = u):
        # f ~ z + u eps (z_1 - mu0_1), i.e. M = [[1 + a*, 0], [alpha, 1]] about mu0 = A x + C.
        a_star = -math.log(math.e - 1)
        s1 = SCALE_TRIL[0, 0] / (1 + a_star)
        alpha, s2 = SCALE_TRIL[1, 0] / s1, SCALE_TRIL[1, 1]
        flow_bias = np.array([a_star / eps, alpha / eps, eps, 0.0, -eps * C[0]])  # u, w, b
        flow_kernel[:, 4] = -eps * A[0]
        model = _model(name, A.T, C, np.log([s1, s2]), flow_kernel, flow_bias)
    else:
        # z' = z + Q R tanh(R~ Q^T z + b) with Q = I (the QR of an upper-triangular
        # matrix with a positive diagonal), R~ = diag(0, eps), R = [[0, gamma/eps], [0, 0]],
        # b = (0, -eps mu0_2(x)): z'_1 ~ z_1 + gamma (z_2 - mu0_2), log-det 0, i.e.
        # M = [[1, gamma], [0, 1]] with M diag(s)^2 M^T = COV.
        gamma = COV[0, 1] / COV[1, 1]
        s1, s2 = math.sqrt(COV[0, 0] - COV[0, 1] ** 2 / COV[1, 1]), math.sqrt(COV[1, 1])
        # [R_12, R~_12, raw diag R (2), raw diag R~ (2), b (2), Q's matrix (d x M)]
        flow_bias = np.array([gamma / eps, 0.0, 0.0, 0.0, 0.0, math.atanh(eps), 0.0,
                              -eps * C[1], 1.5, 0.4, 0.0, 0.8])
        flow_kernel[:, 7] = -eps * A[1]
        model = _model(name, A.T, C, np.log([s1, s2]), flow_kernel, flow_bias)
    return model


def _perturbed_flow_posterior(name, seed=0):
    """A flow posterior near, not at, p(z|x): the exact construction of
    `_exact_flow_posterior` with the base mean shifted by 0.1, its scales 1.3x wider,
    and the flow's parameters (their dependence on x, and the IAF's MADE weights)
    perturbed at random; planar and Sylvester at eps = 0.5, where tanh is far from linear."""
    model = _exact_flow_posterior(name, eps=0.5)
    rng = np.random.default_rng(seed)
    head = model.latent._head
    kernel, bias = head.kernel.numpy(), head.bias.numpy()
    bias[:D] += 0.1
    bias[D:2 * D] += math.log(1.3)
    kernel[:, 2 * D:] += 0.02 * rng.normal(size=kernel[:, 2 * D:].shape)
    bias[2 * D:] += 0.1 * rng.normal(size=bias[2 * D:].shape)
    head.kernel.assign(kernel)
    head.bias.assign(bias)
    if name == "iaf":             # every MADE weight: a nonlinear, context-dependent step
        for weight in model.latent.flow.mades[0].weights:
            weight.assign(weight.numpy() + 0.2 * rng.normal(size=weight.shape))
    return model


def _log_weights(model, x, num_samples, seed):
    """log p(x, z) - log q(z|x) at z ~ q [samples, n] (the Monte-Carlo ELBO terms)."""
    terms = model.elbo_terms(_images(x), seed, num_samples, analytic_kl=False)
    return (terms.log_likelihood - terms.kl).numpy().astype(np.float64)


def _check_is_converges(model, x, exact, label, k_large=K_LARGE):
    """IS at K = 1, 100 (replicated) and k_large against the exact log p(x) [n].

    Tolerances: at K = 1 the estimate is the single-sample ELBO, below log p(x) by the
    KL(q || p(z|x)) (> 0.03 nats here); at k_large the error is within 4 standard
    errors (sqrt(Var w / (K E[w]^2)), from 64 replicates at K = 100 scaled by
    sqrt(100 / k_large)) plus 1e-3 (float32 log-weights), and below 0.02 nats.
    """
    n = len(x)
    tiled = lambda r: _images(np.tile(x, [r, 1]))
    k1 = model.log_prob(tiled(2000), num_samples=1, seed=(1, 2)).numpy().reshape(-1, n)
    k100 = model.log_prob(tiled(64), num_samples=100, seed=(3, 4)).numpy().reshape(-1, n)
    large = model.log_prob(_images(x), num_samples=k_large, chunk_size=5000,
                           seed=(5, 6)).numpy()
    err_1, err_100, err_large = k1.mean(0) - exact, k100.mean(0) - exact, large - exact
    se_large = k100.std(0) * math.sqrt(100 / k_large)
    print(f"{label}: error K=1 {err_1}\n  K=100 {err_100}\n  K={k_large} {err_large} "
          f"(se {se_large})")
    assert np.all(err_1 < -0.03), err_1
    assert np.all(np.abs(err_large) < np.abs(err_1)), (err_large, err_1)
    assert np.mean(np.abs(err_100)) < np.mean(np.abs(err_1)), (err_100, err_1)
    assert np.all(np.abs(err_large) < 4 * se_large + 1e-3), (err_large, se_large)
    assert np.all(np.abs(err_large) < 0.02), err_large
    # ELBO <= log p(x): the mean of 2000 single-sample ELBOs is below it.
    elbo = model.elbo(_images(x), num_samples=2000, seed=(7, 8)).numpy()
    assert np.all(elbo < exact), (elbo, exact)


FLOWS = ["iaf", "planar", "householder", "sylvester"]


@pytest.mark.parametrize("name", FLOWS)
def test_flow_posterior_makes_the_elbo_exact(name):
    """With hand-set weights the flow posterior is p(z|x): every importance weight is p(x).

    The best diagonal Gaussian stays 0.28 nats below log p(x) (mean-field gap
    -log(1 - rho^2) / 2 at the posterior correlation rho = -0.65): the flow closes it.
    """
    rho = COV[0, 1] / math.sqrt(COV[0, 0] * COV[1, 1])
    assert -0.5 * math.log(1 - rho ** 2) > 0.25
    model = _exact_flow_posterior(name)
    # log p(x, z) - log q(z|x) = log p(x) + log p(z|x) - log q(z|x): constant iff q = p(z|x).
    log_w = _log_weights(model, X, 256, seed=(9, 10))
    np.testing.assert_allclose(log_w, np.broadcast_to(EXACT, log_w.shape), rtol=0, atol=1e-3)
    np.testing.assert_allclose(model.elbo(_images(X), num_samples=8, seed=(11, 12)), EXACT,
                               rtol=0, atol=1e-3)
    np.testing.assert_allclose(model.log_prob(_images(X), num_samples=3, seed=(13, 14)), EXACT,
                               rtol=0, atol=1e-3)
    # The exact posterior's moments, from samples: mean A x + C and covariance COV.
    z = model.encode(_images(X[:1])).sample(20_000, seed=(15, 16)).numpy()[:, 0]
    np.testing.assert_allclose(z.mean(0), A @ X[0] + C, atol=0.015)       # se 0.003
    np.testing.assert_allclose(np.cov(z.T), COV, atol=0.01)                # se ~0.0015


@pytest.mark.parametrize("name", FLOWS)
def test_flow_posterior_is_estimate_converges_to_the_exact_log_prob(name):
    """An inexact flow posterior: IS -> log p(x) in closed form as K grows (tolerances
    in `_check_is_converges`)."""
    _check_is_converges(_perturbed_flow_posterior(name), X, EXACT, name)


def _proposal_head(scale=1.3):
    """Full-covariance head: the standard-normal model's exact posterior, `scale` x wider."""
    return lg.head_values(A, C, scale * SCALE_TRIL)


@pytest.mark.parametrize("flow", ["maf", "realnvp"])
def test_flow_prior_is_estimate_converges_to_the_quadrature(flow):
    """IS with a learned flow prior -> log int p(x|z) p(z) dz on a 2-D grid.

    The prior is a MAF / RealNVP at its seeded init with every weight perturbed at
    random (a non-Gaussian p(z)); the grid oracle uses its `log_prob`.
    """
    prior = density.FlowPrior(D, flow=flow, num_flows=2, hidden_units=(8,), seed=3,
                              name="prior")
    latent = latents.LatentLayer(families.FullCovarianceGaussian(D), prior=prior)
    model = lg.build_model(WEIGHT, BIAS, latent, *_proposal_head(), analytic_kl=False)
    rng = np.random.default_rng(4)
    for w in prior.weights:
        w.assign(w.numpy() + 0.1 * rng.normal(size=w.shape))
    log_prior = lambda z: model.prior().log_prob(z).numpy()
    exact, log_mass, log_off_grid = lg.quadrature_log_prob(WEIGHT, BIAS, X, log_prior)
    finer, _, _ = lg.quadrature_log_prob(WEIGHT, BIAS, X, log_prior, points=721)
    # The oracle: the integral off the grid is below e^-20 p(x), a 1.5x finer grid agrees
    # to 1e-4 nats (posterior sds ~0.3, cells 0.025), and the grid holds nearly all of
    # the prior (a sanity check of its `log_prob`, not needed by the bound).
    assert np.all(log_off_grid < exact - 20), (log_off_grid, exact)
    np.testing.assert_allclose(exact, finer, rtol=0, atol=1e-4)
    assert abs(log_mass) < 1e-3, log_mass
    # Not the standard-normal answer: the prior matters (by > 0.1 nats on average).
    assert np.mean(np.abs(exact - EXACT)) > 0.1, (exact, EXACT)
    _check_is_converges(model, X, exact, f"{flow} prior")


def test_vamp_prior_with_full_covariance_posteriors_is_estimate_converges():
    """IS with the VampPrior over full-covariance posteriors (the `MixtureSameFamily`
    path) -> the Gaussian-mixture marginal in closed form.

    The data are drawn from the model itself (z from the mixture, x ~ p(x|z)), so each
    posterior sits near its component; the head is the standard-normal model's posterior
    widened, with a small random dependence of the covariance on x, so the components
    differ in shape.
    """
    rng = np.random.default_rng(6)
    kernel, bias = _proposal_head(1.5)
    kernel[:, D:] = 0.1 * rng.normal(size=kernel[:, D:].shape)
    prior = vamp.VampPrior(3, (lg.X_DIM, 1, 1), seed=4)
    model = lg.build_model(WEIGHT, BIAS, latents.LatentLayer(families.FullCovarianceGaussian(D)),
                           kernel, bias, model_class=vamp_vae.VampVAE, vamp_prior=prior)
    p = model.prior()
    assert isinstance(p, vamp.tfd.MixtureSameFamily)
    assert not isinstance(p, vamp.DiagonalGaussianMixture)
    components = model.encode(prior.pseudo_inputs())
    means = components.loc.numpy().astype(np.float64)                     # [K, 2]
    covs = components.covariance().numpy().astype(np.float64)             # [K, 2, 2]
    z = means[[0, 1, 2, 0]] + np.einsum("kij,kj->ki", np.linalg.cholesky(covs[[0, 1, 2, 0]]),
                                        rng.normal(size=(4, D)))
    x = z @ WEIGHT.T + BIAS + lg.SIGMA * rng.normal(size=(4, lg.X_DIM))
    log_components = np.stack([
        multivariate_normal(WEIGHT @ m + BIAS, WEIGHT @ s @ WEIGHT.T
                            + lg.SIGMA ** 2 * np.eye(lg.X_DIM)).logpdf(x)
        for m, s in zip(means, covs)])                                     # [K, n]
    exact = logsumexp(log_components, axis=0) - math.log(len(means))
    assert np.all(np.ptp(log_components, axis=0) > 0.5)   # the components disagree on x
    _check_is_converges(model, x, exact, "vamp")
