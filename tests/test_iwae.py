"""The importance-weighted bound against the linear-Gaussian oracle (tests/linear_gaussian.py).

L_1 is the single-sample ELBO (same seed, same number); L_k rises with k on
average and tends to the exact log p(x); with the exact posterior every
weight equals p(x) and L_k = log p(x) for every k. MIWAE is the mean of M
IWAE-K bounds, checked by hand.
"""

import numpy as np
import pytest
import scipy.special
import tensorflow as tf

from tests import linear_gaussian as lg
from tfvae.models import VAE
from tfvae.objectives import importance_weighted as objectives_iw
from zoo import iwae as iwae_entry


def _models(exact=False, k=1):
    """(VAE, IWAE: a VAE on `IWAEBound(k)`) sharing the oracle's layers; a poor posterior
    unless `exact`."""
    weight, bias, x = lg.problem(seed=1)
    a, c, scale_tril = lg.exact_posterior(weight, bias)
    if not exact:
        a, c, scale_tril = 0.6 * a, c + 0.3, 1.5 * scale_tril    # away from p(z|x)
    vae = lg.build(weight, bias, a, c, scale_tril, analytic_kl=False)
    model = VAE(vae.encoder, vae.decoder, vae.latent, vae.likelihood,
                objective=objectives_iw.IWAEBound(k=k), seed=0)
    x_img = tf.constant(x.reshape(-1, lg.X_DIM, 1, 1), tf.float32)
    return vae, model, x_img, lg.exact_log_prob(weight, bias, x)


def _bounds(model, x, k, m, seed):
    """m independent IWAE-k bounds per example [m, batch] (float64)."""
    terms = model.elbo_terms(x, tf.constant(seed, tf.int32), num_samples=k * m,
                             analytic_kl=False)
    log_w = tf.reshape(terms.log_likelihood - terms.kl, [m, k, -1])
    return scipy.special.logsumexp(log_w.numpy().astype(np.float64), axis=1) - np.log(k)


def test_iwae_with_one_sample_is_the_elbo_of_the_same_seed():
    vae, model, x, _ = _models(k=1)
    for seed in ([1, 2], [7, 3]):
        np.testing.assert_allclose(model.training_objective.bound(model, x, seed=seed),
                                   vae.elbo(x, seed=seed), rtol=1e-6)
    values = model.objective(x, tf.constant([5, 6]))
    assert float(values["iwae"]) == pytest.approx(float(values["elbo"]), rel=1e-6)
    assert float(values["loss"]) == pytest.approx(-float(values["iwae"]))


def test_iwae_rises_with_k_towards_the_exact_log_likelihood():
    _, model, x, exact = _models()
    ks, m = (1, 2, 5, 20, 100, 1000), 200
    means, stderrs = [], []
    for i, k in enumerate(ks):
        bounds = _bounds(model, x, k, m if k < 1000 else 20, seed=[3, i]).mean(axis=1)  # [m]
        means.append(bounds.mean())
        stderrs.append(bounds.std(ddof=1) / np.sqrt(len(bounds)))
    means, stderrs = np.array(means), np.array(stderrs)
    # Each step up in k raises the bound by more than its Monte-Carlo error.
    gains = np.diff(means)
    assert np.all(gains > 3 * np.hypot(stderrs[1:], stderrs[:-1])), (means, stderrs)
    # L_1 is far below log p(x) for this poor posterior; L_1000 is within 1 % of that gap.
    gap_1 = exact.mean() - means[0]
    assert gap_1 > 1.0, (exact.mean(), means)
    assert exact.mean() - means[-1] == pytest.approx(0.0, abs=0.01 * gap_1 + 3 * stderrs[-1])
    assert means[-1] <= exact.mean() + 3 * stderrs[-1]


def test_exact_posterior_gives_log_likelihood_for_every_k():
    _, model, x, exact = _models(exact=True)
    for k in (1, 3, 10):
        bounds = _bounds(model, x, k, 4, seed=[9, k])             # [4, batch]
        np.testing.assert_allclose(bounds, np.broadcast_to(exact, bounds.shape), atol=2e-4)


def test_miwae_bound_is_the_mean_of_m_iwae_bounds():
    log_w = np.random.default_rng(0).normal(scale=3.0, size=(6, 4)).astype(np.float32)
    by_hand = np.mean([scipy.special.logsumexp(log_w[j * 3:(j + 1) * 3], axis=0) - np.log(3)
                       for j in range(2)], axis=0)
    np.testing.assert_allclose(objectives_iw.iwae_bound(log_w, k=3, m=2), by_hand, rtol=1e-6)
    np.testing.assert_allclose(objectives_iw.iwae_bound(log_w, k=6),
                               scipy.special.logsumexp(log_w, axis=0) - np.log(6), rtol=1e-6)
    with pytest.raises(ValueError, match=r"m \* k = 8 samples"):
        objectives_iw.iwae_bound(log_w, k=4, m=2)


def test_iwae_arguments_are_validated():
    with pytest.raises(ValueError, match="Received: k=0"):
        objectives_iw.IWAEBound(k=0)
    with pytest.raises(ValueError, match="Received: m=2.5"):
        objectives_iw.IWAEBound(m=2.5)
    with pytest.raises(ValueError, match="analytic_kl=True"):
        objectives_iw.IWAEBound(analytic_kl=True)
    # The bound has no β (it weights a KL the bound does not contain): the objective has no
    # such option, and the zoo entry refuses the one it inherits from `vae`.
    with pytest.raises(TypeError, match="beta"):
        objectives_iw.IWAEBound(beta=2.0)
    with pytest.raises(ValueError, match="beta=2.0"):
        iwae_entry.Config(beta=2.0)
