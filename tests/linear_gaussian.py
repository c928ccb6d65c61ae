"""The linear-Gaussian (probabilistic PCA) oracle, built as a tfvae VAE.

p(z) = N(0, I_d), p(x|z) = N(W z + b, sigma^2 I_D): log p(x) is exact,
N(x; b, W W^T + sigma^2 I), and so is the posterior
p(z|x) = N(M^-1 W^T (x - b), sigma^2 M^-1) with M = W^T W + sigma^2 I.
The VAE's encoder is the identity, its latent head is linear and its
posterior family is Algorithm 2's full-covariance Gaussian, so it can
represent the exact posterior; its decoder is the linear map.
"""

import math

import numpy as np
from scipy.special import logsumexp

from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.models import VAE
from tfvae.objectives.elbo import ELBO

X_DIM, Z_DIM, SIGMA = 5, 2, 0.5


def problem(seed=0):
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(X_DIM, Z_DIM))
    bias = rng.normal(size=X_DIM)
    z = rng.normal(size=(8, Z_DIM))
    x = z @ weight.T + bias + SIGMA * rng.normal(size=(8, X_DIM))
    return weight, bias, x


def exact_log_prob(weight, bias, x):
    cov = weight @ weight.T + SIGMA ** 2 * np.eye(X_DIM)
    diff = x - bias
    _, logdet = np.linalg.slogdet(cov)
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    return -0.5 * (X_DIM * math.log(2 * math.pi) + logdet + maha)


def exact_posterior(weight, bias):
    """Returns (A, c, L): posterior mean A x + c and scale_tril L."""
    m = weight.T @ weight + SIGMA ** 2 * np.eye(Z_DIM)
    a = np.linalg.solve(m, weight.T)
    return a, -a @ bias, np.linalg.cholesky(SIGMA ** 2 * np.linalg.inv(m))


def head_values(a, c, scale_tril):
    """Latent-head kernel and bias producing (mu, log sigma, L') of Algorithm 2."""
    family = families.FullCovarianceGaussian(Z_DIM)
    kernel = np.zeros((X_DIM, family.params_size))
    kernel[:, :Z_DIM] = a.T
    rows, cols = np.tril_indices(Z_DIM, -1)
    bias = np.concatenate([c, np.log(np.diag(scale_tril)), scale_tril[rows, cols]])
    return kernel, bias


def build(weight, bias, a, c, scale_tril, analytic_kl):
    """The oracle VAE with posterior N(A x + c, L L^T), trained on `ELBO(analytic_kl=...)`."""
    kernel, head_bias = head_values(a, c, scale_tril)
    return build_model(weight, bias, latents.LatentLayer(families.FullCovarianceGaussian(Z_DIM)),
                       kernel, head_bias, analytic_kl=analytic_kl)


def build_model(weight, bias, latent, head_kernel, head_bias, model_class=VAE, analytic_kl=None,
                **kwargs):
    """The oracle's decoder with any latent layer (posterior family, flow, prior).

    The encoder is the identity and the latent head linear, so q(z|x) is the
    latent layer's posterior at params = x @ head_kernel + head_bias.

    Args:
      weight, bias: the decoder, p(x|z) = N(weight z + bias, SIGMA^2 I).
      latent: a `LatentLayer` of size Z_DIM.
      head_kernel, head_bias: [X_DIM, latent.params_size] and [latent.params_size].
      model_class: `VAE` or a subclass (`VampVAE`, ...); **kwargs go to it.
      analytic_kl: if not None, the model trains on `ELBO(analytic_kl=analytic_kl)`
        (its `objective`; not with an `objective` in kwargs).
    """
    if analytic_kl is not None:
        assert "objective" not in kwargs, "pass analytic_kl or objective, not both"
        kwargs["objective"] = ELBO(analytic_kl=analytic_kl)
    likelihood = families.Gaussian((X_DIM, 1, 1), scale=SIGMA)
    model = model_class(networks.MLP([], X_DIM), networks.MLP([], X_DIM), latent, likelihood,
                        seed=0, **kwargs)
    model.build((None, X_DIM, 1, 1))
    model.encoder._out.kernel.assign(np.eye(X_DIM))
    model.encoder._out.bias.assign(np.zeros(X_DIM))
    model.latent._head.kernel.assign(head_kernel)
    model.latent._head.bias.assign(head_bias)
    model.decoder._out.kernel.assign(weight.T)
    model.decoder._out.bias.assign(bias)
    return model


def expected_elbo(weight, bias, x, loc, scale_tril):
    """The exact ELBO E_q[log p(x, z) - log q(z)] for q = N(loc, L L^T) [n]."""
    cov = scale_tril @ scale_tril.T
    resid = x - bias - loc @ weight.T
    log_lik = (-0.5 * X_DIM * math.log(2 * math.pi * SIGMA ** 2)
               - 0.5 / SIGMA ** 2 * ((resid ** 2).sum(-1) + np.trace(weight @ cov @ weight.T)))
    log_prior = -0.5 * Z_DIM * math.log(2 * math.pi) - 0.5 * ((loc ** 2).sum(-1) + np.trace(cov))
    entropy = 0.5 * Z_DIM * (1 + math.log(2 * math.pi)) + np.log(np.diag(scale_tril)).sum()
    return log_lik + log_prior + entropy


def log_likelihood(weight, bias, x, z):
    """log p(x|z) [n, G] in float64 for x [n, X_DIM] and z [G, Z_DIM]."""
    sq = ((x[:, None, :] - (z @ weight.T + bias)[None]) ** 2).sum(-1)
    return -0.5 * X_DIM * math.log(2 * math.pi * SIGMA ** 2) - 0.5 / SIGMA ** 2 * sq


def quadrature_log_prob(weight, bias, x, log_prior, limit=6.0, points=481):
    """log p(x) = log int p(x|z) p(z) dz [n] for any prior, by a grid over z in R^2.

    A Riemann sum on [-limit, limit]^2 with a float64 logsumexp: exact up to the
    grid spacing (the integrand is smooth; callers compare a finer grid) and the
    mass off the grid. That mass is bounded without the prior: p(x|z) is a
    Gaussian in z with its mode inside the box, so off the box it is below its
    maximum on the box's boundary, and the integral off the grid is at most that
    maximum (times the prior's mass there, <= 1).

    Args:
      weight, bias, x: the decoder and x [n, X_DIM].
      log_prior: callable mapping z [G, Z_DIM] float32 to log p(z) [G].
      limit, points: the grid, `points` per axis.

    Returns:
      (log p(x) [n], log of the prior's mass on the grid, the log of the bound
      on the integral off the grid [n]).
    """
    axis = np.linspace(-limit, limit, points)
    log_cell = Z_DIM * math.log(axis[1] - axis[0])
    z = np.stack(np.meshgrid(*[axis] * Z_DIM, indexing="ij"), -1).reshape(-1, Z_DIM)
    log_p = np.asarray(log_prior(z.astype("float32")), np.float64)
    mode = np.linalg.solve(weight.T @ weight, weight.T @ (x - bias).T).T
    assert np.all(np.abs(mode) < limit), mode
    edge = z[np.abs(z).max(-1) == limit]
    return (logsumexp(log_likelihood(weight, bias, x, z) + log_p, axis=1) + log_cell,
            logsumexp(log_p) + log_cell, log_likelihood(weight, bias, x, edge).max(-1))
