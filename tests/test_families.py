"""Families: densities against closed forms, Algorithm 2, shapes, validation."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests.layer_contract import check_family
from tfvae.distributions import families

tfd = tfp.distributions
RNG = np.random.default_rng(7)


def test_bernoulli_matches_book_formula():
    family = families.Bernoulli((4, 3, 1))
    logits = RNG.normal(size=(5, 12)).astype("float32")
    x = (RNG.random((5, 4, 3, 1)) > 0.5).astype("float32")
    dist = check_family(family, logits)
    assert dist.event_shape == (4, 3, 1) and dist.batch_shape == (5,)
    p = 1 / (1 + np.exp(-logits.reshape(5, 4, 3, 1).astype(np.float64)))
    expected = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=(1, 2, 3))  # §1.7.3
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-5)
    np.testing.assert_allclose(dist.mean(), p, rtol=1e-5)


@pytest.mark.parametrize("scale", [None, 0.3])
def test_gaussian_fixed_and_learned_scale(scale):
    family = families.Gaussian((2, 2, 1), scale=scale)
    params = RNG.normal(size=(3, family.params_size)).astype("float32")
    dist = check_family(family, params)
    x = RNG.normal(size=(3, 2, 2, 1)).astype("float32")
    if scale is None:
        loc, raw = params.reshape(3, 2, 2, 1, 2)[..., 0], params.reshape(3, 2, 2, 1, 2)[..., 1]
        sigma = np.log1p(np.exp(raw)) + 1e-3
    else:
        loc, sigma = params.reshape(3, 2, 2, 1), np.full((3, 2, 2, 1), scale)
    expected = (-0.5 * ((x - loc) / sigma) ** 2 - np.log(sigma) - 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(dist.log_prob(x), expected.sum(axis=(1, 2, 3)), rtol=1e-5)


def test_categorical():
    family = families.Categorical(4)
    logits = RNG.normal(size=(6, 4)).astype("float32")
    dist = check_family(family, logits)
    labels = np.array([0, 1, 2, 3, 0, 1])
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(dist.log_prob(labels), log_softmax[np.arange(6), labels], rtol=1e-5)
    grid = families.Categorical(3, event_shape=(2,))
    assert grid.make(np.zeros((5, 6), "float32")).event_shape == (2,)


def test_diagonal_gaussian_density_is_the_books():
    d = 5
    family = families.DiagonalGaussian(d)
    params = RNG.normal(size=(4, 2 * d)).astype("float32")
    q = check_family(family, params)
    loc, log_sigma = params[:, :d], params[:, d:]
    z = q.sample(seed=(1, 2)).numpy()
    eps = (z - loc) / np.exp(log_sigma)
    # §2.5: log q(z|x) = sum_i log N(eps_i; 0, 1) - log sigma_i.
    expected = (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi) - log_sigma).sum(-1)
    np.testing.assert_allclose(q.log_prob(z), expected, rtol=1e-5, atol=1e-5)


def _algorithm2_reference(params, d):
    """Algorithm 2's L built independently with numpy: L = L_mask * L' + diag(sigma)."""
    loc, log_sigma, lower = params[..., :d], params[..., d:2 * d], params[..., 2 * d:]
    batch = params.shape[0]
    l_prime = np.zeros((batch, d, d))
    rows, cols = np.tril_indices(d, -1)
    l_prime[:, rows, cols] = lower
    l_prime += RNG.normal(size=(batch, d, d)) * np.triu(np.ones((d, d)))  # masked away below
    mask = np.tril(np.ones((d, d)), -1)
    scale_tril = mask * l_prime + np.einsum("bi,ij->bij", np.exp(log_sigma), np.eye(d))
    return loc, scale_tril, log_sigma


def test_full_covariance_is_algorithm_2():
    d = 4
    family = families.FullCovarianceGaussian(d)
    assert family.params_size == 2 * d + d * (d - 1) // 2
    params = RNG.normal(size=(3, family.params_size)).astype("float32")
    q = check_family(family, params)
    loc, scale_tril, log_sigma = _algorithm2_reference(params.astype(np.float64), d)
    _, built, _ = family.scale_tril(params)
    np.testing.assert_allclose(built, scale_tril, rtol=1e-6, atol=1e-6)

    reference = tfd.MultivariateNormalTriL(loc, scale_tril)
    z = q.sample(7, seed=(3, 4))
    np.testing.assert_allclose(q.log_prob(z), reference.log_prob(tf.cast(z, tf.float64)),
                               rtol=1e-5, atol=1e-4)
    # Algorithm 2's own expression: eps = L^{-1}(z - mu);
    # log q = -sum_i (0.5 (eps_i^2 + log 2 pi) + log sigma_i).
    eps = np.linalg.solve(scale_tril[None], (z.numpy() - loc)[..., None])[..., 0]
    algo2 = -(0.5 * (eps ** 2 + math.log(2 * math.pi)) + log_sigma).sum(-1)
    np.testing.assert_allclose(q.log_prob(z), algo2, rtol=1e-5, atol=1e-4)
    # log |det dz/deps| = sum_i log sigma_i equals slogdet(L).
    np.testing.assert_allclose(np.linalg.slogdet(scale_tril)[1], log_sigma.sum(-1), rtol=1e-6)


def test_full_covariance_sample_covariance_is_l_lt():
    d = 3
    family = families.FullCovarianceGaussian(d)
    params = RNG.normal(size=(1, family.params_size)).astype("float32") * 0.5
    q = family.make(params)
    _, scale_tril, _ = family.scale_tril(params)
    n = 200_000
    z = q.sample(n, seed=(5, 6)).numpy()[:, 0]                   # [n, d]
    cov = np.cov(z, rowvar=False)
    target = (scale_tril[0] @ tf.transpose(scale_tril[0])).numpy()
    # Standard error of a covariance entry ~ sqrt((S_ii S_jj + S_ij^2) / n).
    stderr = np.sqrt((np.outer(np.diag(target), np.diag(target)) + target ** 2) / n)
    assert np.all(np.abs(cov - target) < 5 * stderr), (cov, target)


@pytest.mark.parametrize("make", [
    lambda: families.Bernoulli((0, 3)),
    lambda: families.Bernoulli("abc"),
    lambda: families.Gaussian((2,), scale=-1.0),
    lambda: families.Categorical(1),
    lambda: families.DiagonalGaussian(0),
])
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError, match="Received"):
        make()


def test_wrong_params_size_names_the_shape():
    with pytest.raises(ValueError, match=r"last dimension 8.*Received: params.shape"):
        families.DiagonalGaussian(4).make(np.zeros((2, 6), "float32"))
    with pytest.raises(ValueError, match="params.shape"):
        families.Bernoulli((2, 2, 1)).make(np.zeros((2, 5), "float32"))
