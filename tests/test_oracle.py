"""The linear-Gaussian oracle (DESIGN: tests that carry weight).

Exact log p(x) is known: the IS estimate (book §2.6) converges to it, the
ELBO stays below it, and with the exact posterior the ELBO equals it.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests import linear_gaussian as lg


def _x(x):
    return tf.constant(x.reshape(-1, lg.X_DIM, 1, 1), tf.float32)


@pytest.fixture(scope="module")
def setup():
    weight, bias, x = lg.problem()
    return weight, bias, x, lg.exact_log_prob(weight, bias, x)


def test_exact_posterior_makes_the_elbo_exact(setup):
    weight, bias, x, log_px = setup
    a, c, scale_tril = lg.exact_posterior(weight, bias)
    # Monte-Carlo KL: every single-sample estimate equals log p(x) (zero variance).
    model = lg.build(weight, bias, a, c, scale_tril, analytic_kl=False)
    elbo = model.elbo(_x(x), num_samples=16, seed=(1, 2)).numpy()
    np.testing.assert_allclose(elbo, log_px, rtol=0, atol=2e-3)
    # Analytic KL: the estimate is unbiased for log p(x).
    model = lg.build(weight, bias, a, c, scale_tril, analytic_kl=True)
    elbo = model.elbo(_x(x), num_samples=20000, seed=(3, 4)).numpy()
    np.testing.assert_allclose(elbo, log_px, rtol=0, atol=0.05)
    # The exact expected ELBO of the closed form agrees too.
    np.testing.assert_allclose(
        lg.expected_elbo(weight, bias, x, x @ a.T + c, scale_tril), log_px, atol=1e-9)
    # And importance sampling with the exact posterior is exact for any K.
    np.testing.assert_allclose(model.log_prob(_x(x), num_samples=3, seed=(5, 6)), log_px,
                               atol=2e-3)


def test_elbo_below_and_is_estimate_converges(setup):
    weight, bias, x, log_px = setup
    a, c, scale_tril = lg.exact_posterior(weight, bias)
    # A wrong posterior: shrunken mean map, shifted, twice as wide.
    a_bad, c_bad, l_bad = 0.6 * a, c + 0.3, 2.0 * scale_tril
    model = lg.build(weight, bias, a_bad, c_bad, l_bad, analytic_kl=True)
    exact_elbo = lg.expected_elbo(weight, bias, x, x @ a_bad.T + c_bad, l_bad)
    gap = log_px - exact_elbo
    assert np.all(gap > 0.5)                 # ELBO = log p(x) - KL(q || p(z|x)) < log p(x).
    mc_elbo = model.elbo(_x(x), num_samples=20000, seed=(7, 8)).numpy()
    np.testing.assert_allclose(mc_elbo, exact_elbo, atol=0.05)
    assert np.all(mc_elbo < log_px)

    errors = {}
    for k in (1, 10, 100, 1000, 5000):
        estimates = np.stack([model.log_prob(_x(x), num_samples=k, chunk_size=256,
                                             seed=(k, s)).numpy() for s in range(4)])
        errors[k] = np.abs(estimates.mean(0) - log_px).mean()
        if k == 1:
            # K = 1 is the single-sample ELBO: unbiased for the ELBO, far below log p(x).
            assert np.mean(estimates) < np.mean(log_px) - 0.5 * np.mean(gap)
    ks = sorted(errors)
    assert all(errors[k2] < errors[k1] for k1, k2 in zip(ks, ks[1:])), errors
    assert errors[5000] < 0.02 * np.mean(gap) + 0.01, errors
