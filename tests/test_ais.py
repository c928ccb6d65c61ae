"""AIS and BDMC (`tfvae.evaluation.ais`) against the linear-Gaussian oracle and a trained VAE.

Appendix issue: HMC leaves the exact posterior invariant; AIS converges to
the exact log p(x) as the number of intermediate distributions grows; the
forward and reverse (BDMC) chains bracket it; on a trained VAE, AIS is above
the ELBO and agrees with importance sampling at large K.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests import linear_gaussian as lg
from tfvae.data import datasets as data_lib
from tfvae.evaluation import ais
from tfvae.models import base
from tfvae.training import train
from zoo import maf
from zoo import vae


@pytest.fixture(scope="module")
def oracle():
    weight, bias, x = lg.problem(0)
    a, c, scale_tril = lg.exact_posterior(weight, bias)
    model = lg.build(weight, bias, a, c, scale_tril, analytic_kl=True)
    posterior_mean = x @ a.T + c
    return model, weight, bias, x.reshape(8, lg.X_DIM, 1, 1).astype("float32"), \
        posterior_mean, scale_tril


def test_hmc_transitions_leave_the_exact_posterior_invariant(oracle):
    model, _, _, x, mean, scale_tril = oracle
    chains = 2000
    z0 = mean[None] + np.random.default_rng(1).normal(size=(chains, 8, lg.Z_DIM)) @ scale_tril.T
    batch = base.Batch(tf.constant(x), None, None, None)
    r = ais.start_distribution(model, batch, "posterior", seed=(0, 1))
    # beta = 1 throughout: 20 HMC transitions on p(z|x) itself, weights unchanged.
    run = tf.function(lambda z: ais.anneal(model, batch, r, z, tf.ones([21]), 10, seed=(5, 6),
                                           steps=tf.fill([20, 8], 0.3)))
    log_w, z, acceptance, _ = run(tf.constant(z0, tf.float32))
    z = z.numpy()
    cov = scale_tril @ scale_tril.T
    standard_error = np.sqrt(np.diag(cov) / chains)                  # per dimension
    assert np.all(np.abs(z.mean(0) - mean) < 4.5 * standard_error)
    sample_cov = np.einsum("cbi,cbj->bij", z - z.mean(0), z - z.mean(0)) / chains
    # The standard error of a covariance entry from 2000 draws is about 0.004 here.
    np.testing.assert_allclose(sample_cov, np.broadcast_to(cov, sample_cov.shape), atol=0.02)
    assert float(acceptance) > 0.5                                    # the chains moved
    np.testing.assert_array_equal(log_w.numpy(), 0.0)


def test_ais_converges_to_the_exact_log_likelihood(oracle):
    model, weight, bias, x, _, _ = oracle
    exact = lg.exact_log_prob(weight, bias, x.reshape(8, -1))
    errors = {}
    for steps in (1, 1000):
        result = ais.ais_log_prob(model, x, num_chains=64, num_steps=steps, seed=(1, 2))
        errors[steps] = np.abs(result.log_prob.numpy() - exact)
    # Measured: max error 0.107 at T = 1 (importance sampling from the moment-matched
    # start), 0.015 at T = 1000.
    assert errors[1000].max() < 0.04
    assert errors[1000].mean() < errors[1].mean() / 3
    # From the prior (far from the posterior), the error falls with T too.
    prior = {steps: np.abs(ais.ais_log_prob(model, x, num_chains=64, num_steps=steps,
                                            start="prior", seed=(3, 4)).log_prob.numpy() - exact)
             for steps in (10, 1000)}
    assert prior[1000].mean() < 0.1 < prior[10].mean()


def test_bdmc_brackets_the_exact_log_likelihood_and_the_gap_closes(oracle):
    model, weight, bias, _, _, _ = oracle
    gaps = {}
    for steps in (30, 1000):
        result = ais.bdmc(model, 64, num_steps=steps, num_chains=4, start="prior", seed=(3, 4))
        exact = lg.exact_log_prob(weight, bias, result["x"].numpy().reshape(64, -1))
        forward = result["forward"].numpy() - exact
        reverse = result["reverse"].numpy() - exact
        # Stochastic bounds: they hold on average over the simulated examples, up to
        # the noise of a mean over 64 of them (3 standard errors).
        assert forward.mean() < 3 * _standard_error(forward), (steps, forward)
        assert reverse.mean() > -3 * _standard_error(reverse), (steps, reverse)
        gaps[steps] = reverse.mean() - forward.mean()
        print(f"T={steps}: forward - exact {forward.mean():+.4f}, reverse - exact "
              f"{reverse.mean():+.4f}")
    # Measured gaps: 0.87 nats at T = 30, 0.03 at T = 1000.
    assert gaps[1000] < 0.15 < gaps[30]


def _standard_error(values):
    return values.std(ddof=1) / np.sqrt(len(values))


@pytest.fixture(scope="module")
def trained_vae():
    config = vae.Config(dataset="digits", latent_size=4, hidden_units=(64,), epochs=5,
                        batch_size=64)
    model = vae.build_model(config, data_lib.info("digits"))
    test = next(iter(config.held_out_dataset("test", batch_size=32)))["image"]
    model(test[:1])
    model.compile(optimizer=train.make_optimizer(config))
    for epoch in range(config.epochs):
        model.fit(config.train_dataset(epoch), verbose=0)
    return model, test


def test_on_a_trained_vae_ais_is_above_the_elbo_and_agrees_with_is(trained_vae):
    model, x = trained_vae
    result = ais.ais_log_prob(model, x, num_chains=16, num_steps=300, seed=(7, 8))
    log_prob = result.log_prob.numpy()
    elbo = model.elbo(x, num_samples=200, seed=(1, 1)).numpy()
    importance = model.log_prob(x, num_samples=5000, seed=(2, 2)).numpy()
    assert np.all(np.isfinite(log_prob))
    print(f"AIS {log_prob.mean():.4f} ELBO {elbo.mean():.4f} IS {importance.mean():.4f} "
          f"acceptance {float(result.acceptance):.3f}")
    assert log_prob.mean() > elbo.mean() + 0.1
    # Mean over 32 examples; measured: AIS -31.113, IS (K = 5000) -31.115, ELBO -31.942.
    difference = log_prob - importance
    standard_error = _standard_error(difference)
    assert abs(difference.mean()) < max(4 * standard_error, 0.05), (difference.mean(),
                                                                     standard_error)


def test_models_without_continuous_latents_are_refused():
    config = maf.Config()                                 # two_moons: a 2-D density
    model = maf.build_model(config, data_lib.info(config.dataset))
    with pytest.raises(ValueError, match="AIS does not apply to FlowDensity"):
        ais.check_supported(model)


@pytest.mark.parametrize("bad, message", [
    (dict(num_chains=0), "`num_chains` must be an integer >= 1"),
    (dict(num_steps=0), "`num_steps` must be an integer >= 1"),
    (dict(leapfrog_steps=0), "`leapfrog_steps` must be an integer >= 1"),
    (dict(step_size=0.0), "`step_size` must be > 0"),
    (dict(start="middle"), "`start` must be one of"),
    (dict(kind="cosine"), "`schedule` must be one of"),
])
def test_bad_settings_are_refused_naming_them(oracle, bad, message):
    model, _, _, x, _, _ = oracle
    with pytest.raises(ValueError, match=message):
        ais.ais_log_prob(model, x, **bad)
