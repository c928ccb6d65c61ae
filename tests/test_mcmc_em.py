"""MCMC-EM (`tfvae.models.mcmc_em`, book A.2.3) on the linear-Gaussian oracle and from the CLI.

The chains' HMC transitions target the exact posterior p(z|x) of the oracle:
started there they stay there, started at prior draws they reach it, and
the held-out q (the chains' moments) matches it. The entry trains, logs the
chains' acceptance and step size, and resumes bit-identically.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bench.faults import kill_resume
from tests import linear_gaussian as lg
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.models import base
from tfvae.models import mcmc_em
from tfvae.nn import networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _oracle(**kwargs):
    weight, bias, x = lg.problem(0)
    model = mcmc_em.MCMCEM(
        networks.MLP([], lg.X_DIM), latents.LatentLayer(families.DiagonalGaussian(lg.Z_DIM)),
        families.Gaussian((lg.X_DIM, 1, 1), scale=lg.SIGMA), num_examples=8, seed=0, **kwargs)
    model.build((None, lg.X_DIM, 1, 1))
    model.decoder._out.kernel.assign(weight.T)
    model.decoder._out.bias.assign(bias)
    a, c, scale_tril = lg.exact_posterior(weight, bias)
    return model, x.reshape(8, lg.X_DIM, 1, 1).astype("float32"), x @ a.T + c, scale_tril


def _moments(z):
    mean = z.mean(0)
    return mean, np.einsum("cbi,cbj->bij", z - mean, z - mean) / len(z)


@pytest.mark.parametrize("start", ["posterior", "prior"])
def test_the_chains_sample_the_exact_posterior(start):
    model, x, mean, scale_tril = _oracle(leapfrog_steps=5)
    chains = 2000
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(chains, 8, lg.Z_DIM))
    z0 = mean[None] + noise @ scale_tril.T if start == "posterior" else noise
    steps = 20 if start == "posterior" else 200
    batch = base.Batch(tf.constant(x), None, None, None)
    run = tf.function(lambda z: mcmc_em.hmc(model, batch, z, tf.fill([chains, 8], 0.2), steps,
                                            5, tf.constant([3, 4])))
    z, step, acceptance = run(tf.constant(z0, tf.float32))
    sample_mean, sample_cov = _moments(z.numpy())
    cov = scale_tril @ scale_tril.T
    standard_error = np.sqrt(np.diag(cov) / chains)
    assert np.all(np.abs(sample_mean - mean) < 5 * standard_error), (sample_mean - mean)
    np.testing.assert_allclose(sample_cov, np.broadcast_to(cov, sample_cov.shape), atol=0.025)
    assert 0.5 < float(acceptance) <= 1.0


def test_the_held_out_q_has_the_posterior_moments():
    model, x, mean, scale_tril = _oracle(eval_chains=512, eval_mcmc_steps=100)
    q = model.encode(x)
    np.testing.assert_allclose(q.mean().numpy(), mean, atol=0.05)
    np.testing.assert_allclose(q.stddev().numpy(),
                               np.broadcast_to(np.sqrt(np.diag(scale_tril @ scale_tril.T)),
                                               (8, lg.Z_DIM)), rtol=0.12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mcmc_steps=0), "`mcmc_steps` must be an integer >= 1"),
    (dict(eval_chains=1), "`eval_chains` must be >= 2"),
    (dict(initial_step_size=0.0), "`initial_step_size` must be > 0"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _oracle(**kwargs)


def _cli(workdir, *flags):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "zoo.mcmc_em", f"--workdir={workdir}", "--dataset=digits",
         "--hidden_units=32", "--latent_size=4", "--image_summaries=false", "--export=false",
         "--eval_num_samples=20", "--eval_mcmc_steps=20", "--eval_chains=4",
         "--max_train_examples=640", "--max_eval_examples=100", *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_the_entry_trains_logs_its_chains_and_resumes_bit_identically(tmp_path):
    refused = _cli(str(tmp_path / "fullcov"), "--posterior=fullcov")
    assert refused.returncode != 0 and "use --posterior=diagonal --flow=none" in refused.stderr
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    for workdir, epochs in ((straight, 3), (resumed, 2), (resumed, 3)):
        run = _cli(workdir, f"--epochs={epochs}")
        assert run.returncode == 0, run.stderr[-3000:]
    assert "acceptance:" in run.stdout + run.stderr and "step_size:" in run.stdout + run.stderr
    worst, same_metrics = kill_resume.compare(straight, resumed, 3)
    assert worst == 0.0 and same_metrics
