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

from tfvae import families
from tfvae import latents
from tfvae import networks
from tfvae.models import VAE

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
    likelihood = families.Gaussian((X_DIM, 1, 1), scale=SIGMA)
    model = VAE(networks.MLP([], X_DIM), networks.MLP([], X_DIM),
                latents.LatentLayer(families.FullCovarianceGaussian(Z_DIM)), likelihood,
                analytic_kl=analytic_kl, seed=0)
    model.build((None, X_DIM, 1, 1))
    model.encoder._out.kernel.assign(np.eye(X_DIM))
    model.encoder._out.bias.assign(np.zeros(X_DIM))
    kernel, head_bias = head_values(a, c, scale_tril)
    model.latent._head.kernel.assign(kernel)
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
