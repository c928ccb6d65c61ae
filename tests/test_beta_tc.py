"""β-VAE, capacity annealing and the β-TCVAE decomposition against closed forms.

The TC oracle: data x ~ N(0, Σ0) (N examples) and posteriors q(z|x) =
N(x, s² I) give the aggregate posterior q(z) = N(0, Σ), Σ = Σ0 + s² I, whose
total correlation is 0.5 (sum log diag Σ - log det Σ), index-code MI
0.5 log det Σ - d log s and dimension-wise KL to N(0, I) sum_j 0.5 (Σ_jj - 1 -
log Σ_jj). Minibatches of 1000 of the N = 100 000 points must recover them.
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tfvae.data import datasets as data_lib
from tfvae.objectives import disentanglement

D, S, N, BATCH = 3, 0.7, 100_000, 1000


def _sigma0(corr):
    return np.array([[1.0, corr, 0.5 * corr], [corr, 1.0, 0.3 * corr], [0.5 * corr, 0.3 * corr, 1.0]])


def _estimates(corr, estimator, num_batches=5):
    rng = np.random.default_rng(0)
    data = rng.multivariate_normal(np.zeros(D), _sigma0(corr), size=N).astype(np.float32)
    results = []
    for _ in range(num_batches):
        x = data[rng.choice(N, BATCH, replace=False)]
        z = x + S * rng.normal(size=x.shape).astype(np.float32)
        log_prior = (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1).astype(np.float32)
        out = disentanglement.tc_decomposition(tf.constant(z), tf.constant(x),
                                               tf.fill(x.shape, np.float32(S)),
                                               tf.constant(log_prior), N, estimator)
        results.append({k: float(v) for k, v in out.items()})
    return {k: np.mean([r[k] for r in results]) for k in results[0]}


def _exact(corr):
    sigma = _sigma0(corr) + S ** 2 * np.eye(D)
    logdet = np.linalg.slogdet(sigma)[1]
    diag = np.diag(sigma)
    return {"tc": 0.5 * (np.log(diag).sum() - logdet), "mi": 0.5 * logdet - D * np.log(S),
            "dwkl": 0.5 * (diag - 1 - np.log(diag)).sum()}


@pytest.mark.parametrize("corr", [0.0, 0.8])
def test_stratified_estimates_match_the_gaussian_closed_forms(corr):
    exact, estimate = _exact(corr), _estimates(corr, "mss")
    if corr:
        assert exact["tc"] > 0.2             # a correlated case the tolerance can tell from 0
    assert estimate["tc"] == pytest.approx(exact["tc"], abs=0.03)
    assert estimate["mi"] == pytest.approx(exact["mi"], abs=0.05)
    assert estimate["dwkl"] == pytest.approx(exact["dwkl"], abs=0.05)


def test_weighted_sampling_tc_is_offset_by_d_minus_one_log_n():
    # The published MWS weights sum to 1/N per row: log q(z) and every
    # log q(z_j) sit log N low, so TC_MWS = TC + (D - 1) log N here.
    estimate, exact = _estimates(0.8, "mws", num_batches=2), _exact(0.8)
    assert estimate["tc"] - exact["tc"] == pytest.approx((D - 1) * np.log(N), abs=0.05)


def test_importance_weight_rows_sum_to_one_for_mss():
    for m in (1, 2, 7):
        weights = np.exp(disentanglement.log_importance_weights(m, 50, "mss").numpy())
        if m > 1:
            np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
            np.testing.assert_allclose(np.diag(weights), 1 / 50, rtol=1e-6)
    weights = np.exp(disentanglement.log_importance_weights(4, 50, "mws").numpy())
    np.testing.assert_allclose(weights, 1 / 200, rtol=1e-6)
    with pytest.raises(ValueError, match="estimator='nope'"):
        disentanglement.log_importance_weights(4, 50, "nope")


def _tiny(entry_name, **overrides):
    entry = zoo.load(entry_name)
    config = entry.Config(dataset="fashion_mnist", latent_size=4, hidden_units=(16, 16),
                          **overrides)
    model = entry.build_model(config, data_lib.info("fashion_mnist"))
    x = (np.random.default_rng(1).random((16, 28, 28, 1)) > 0.5).astype(np.float32)
    model(x[:1])
    model.compile(optimizer=keras.optimizers.Adam())      # schedules read the step count
    return model, x


def _same_weights(source, target):
    target.set_weights(source.get_weights())


def test_beta_vae_with_beta_one_is_the_vae():
    vae, x = _tiny("vae")
    for beta in (1.0, 4.0):
        model, _ = _tiny("beta_vae", beta=beta)
        _same_weights(vae, model)
        ours, ref = model.objective(x, tf.constant([1, 2])), vae.objective(x, tf.constant([1, 2]))
        expected = float(ref["distortion"] + beta * ref["rate"])
        assert float(ours["loss"]) == pytest.approx(expected, rel=1e-6)
        for key in ("elbo", "rate", "distortion"):
            assert float(ours[key]) == pytest.approx(float(ref[key]), rel=1e-6)


def test_capacity_annealing_loss_by_hand():
    model, x = _tiny("beta_vae", capacity_max=20.0, capacity_steps=1000, gamma=100.0)
    for step, capacity in ((0, 0.0), (250, 5.0), (5000, 20.0)):
        model.optimizer.iterations.assign(step)
        out = model.objective(x, tf.constant([3, 4]))
        assert float(out["capacity"]) == pytest.approx(capacity)
        expected = float(out["distortion"]) + 100.0 * abs(float(out["rate"]) - capacity)
        assert float(out["loss"]) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="kl_warmup_steps=10"):
        _tiny("beta_vae", capacity_max=5.0, kl_warmup_steps=10)


def test_tcvae_with_unit_weights_is_the_monte_carlo_elbo():
    vae, x = _tiny("vae", analytic_kl=False)
    model, _ = _tiny("beta_tcvae", alpha=1.0, beta=1.0, gamma=1.0, dataset_size=1000)
    _same_weights(vae, model)
    ours, ref = model.objective(x, tf.constant([5, 6])), vae.objective(x, tf.constant([5, 6]))
    assert float(ours["loss"]) == pytest.approx(float(ref["loss"]), rel=1e-5)
    assert float(ours["mi"] + ours["tc"] + ours["dwkl"]) == pytest.approx(float(ref["rate"]),
                                                                          rel=1e-4, abs=1e-4)
    weighted, _ = _tiny("beta_tcvae", beta=6.0, dataset_size=1000)
    _same_weights(vae, weighted)
    out = weighted.objective(x, tf.constant([5, 6]))
    expected = float(out["distortion"] + out["mi"] + 6.0 * out["tc"] + out["dwkl"])
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-6)


def test_tcvae_arguments_are_validated():
    with pytest.raises(ValueError, match="dataset_size=0"):
        disentanglement.BetaTC(dataset_size=0)
    with pytest.raises(ValueError, match="estimator='exact'"):
        disentanglement.BetaTC(estimator="exact")
    with pytest.raises(ValueError, match="alpha=-1"):
        disentanglement.BetaTC(alpha=-1)
    config = dataclasses.replace(zoo.load("beta_tcvae").Config(), max_train_examples=300)
    assert zoo.load("beta_tcvae").build_model(
        config, data_lib.info("fashion_mnist")).training_objective.dataset_size == 300
