"""Amortized posterior flows (planar, Householder, Sylvester; book §3.2.2).

The weight-carrying test compares each bijector's forward log-det with the
log |det| of the autodiff Jacobian of its forward map, in float64, for every
(sample, batch) element of z [5, 3, d].
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests.layer_contract import check_layer
from tfvae.flows.householder import HouseholderFlow
from tfvae.flows.planar import PlanarFlow
from tfvae.flows.sylvester import SylvesterFlow

tfd = tfp.distributions
D, BATCH, SAMPLES = 4, 3, 5

FLOWS = {
    "planar": lambda: PlanarFlow(D, 3),
    "householder": lambda: HouseholderFlow(D, 3),
    "sylvester_orthogonal": lambda: SylvesterFlow(D, 3),
    "sylvester_orthogonal_m2": lambda: SylvesterFlow(D, 3, num_ortho_vectors=2),
    "sylvester_householder": lambda: SylvesterFlow(D, 3, "householder", num_householder=2),
    "sylvester_triangular": lambda: SylvesterFlow(D, 3, "triangular"),
}
SYLVESTER = [name for name in FLOWS if name.startswith("sylvester")]


def _random(flow, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    params = scale * rng.normal(size=(BATCH, flow.params_size))        # float64
    z = rng.normal(size=(SAMPLES, BATCH, D))
    return params, z


def _steps(bijector):
    """The per-step bijectors of a flow's chain, in the order they apply."""
    return bijector.bijectors[::-1]


def _autodiff_log_det(bijector, z):
    """log |det dy/dz| [..., batch] from the autodiff Jacobian, and its sign."""
    z = tf.convert_to_tensor(z)
    flat = tf.reshape(z, [-1, D])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        y = tf.reshape(bijector.forward(tf.reshape(flat, z.shape)), [-1, D])
    jacobian = tape.batch_jacobian(y, flat).numpy()                    # [samples*batch, D, D]
    sign, log_det = np.linalg.slogdet(jacobian)
    return log_det.reshape(z.shape[:-1]), sign.reshape(z.shape[:-1])


@pytest.mark.parametrize("name", FLOWS)
def test_log_det_matches_autodiff_jacobian(name):
    flow = FLOWS[name]()
    params, z = _random(flow)
    bijector = flow.bijector(params)
    fldj = bijector.forward_log_det_jacobian(z, event_ndims=1)
    assert fldj.dtype == tf.float64 and fldj.shape == (SAMPLES, BATCH)
    log_det, _ = _autodiff_log_det(flow.bijector(params), z)
    np.testing.assert_allclose(fldj, log_det, rtol=1e-8, atol=1e-10)
    if name != "householder":   # the test has teeth: these flows change volume
        assert np.abs(log_det).max() > 1e-2


@pytest.mark.parametrize("name", FLOWS)
def test_sample_and_log_prob_is_base_minus_log_det(name):
    flow = FLOWS[name]()
    params, _ = _random(flow, seed=1)
    rng = np.random.default_rng(2)
    base = tfd.MultivariateNormalDiag(rng.normal(size=(BATCH, D)),
                                      np.exp(0.3 * rng.normal(size=(BATCH, D))))
    q = tfd.TransformedDistribution(base, flow.bijector(params))
    z, log_q = q.experimental_sample_and_log_prob(7, seed=(4, 2))
    assert z.shape == (7, BATCH, D) and log_q.shape == (7, BATCH)
    assert np.all(np.isfinite(log_q))
    z0 = base.sample(7, seed=(4, 2))   # the same stateless draw
    np.testing.assert_allclose(z, flow.bijector(params).forward(z0), rtol=1e-10, atol=1e-12)
    log_det, _ = _autodiff_log_det(flow.bijector(params), z0)
    np.testing.assert_allclose(log_q, base.log_prob(z0) - log_det, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", FLOWS)
def test_layer_contract(name):
    flow = FLOWS[name]()
    check_layer(flow, (BATCH, flow.params_size), (BATCH, flow.params_size), 0)


@pytest.mark.parametrize("name", FLOWS)
def test_compiles_with_xla(name):
    # Two steps (enough for the triangular variant's reversal) keep compiling short.
    flow = FLOWS[name]()
    flow = type(flow).from_config({**flow.get_config(), "num_flows": 2})
    params, z = (tf.constant(x, tf.float32) for x in _random(flow, seed=3))

    def forward(params, z):
        bijector = flow.bijector(params)
        return bijector.forward(z), bijector.forward_log_det_jacobian(z, event_ndims=1)

    compiled = tf.function(forward, jit_compile=True)(params, z)
    for got, want in zip(compiled, forward(params, z)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_householder_is_an_exact_reflection():
    flow = FLOWS["householder"]()
    params, z = _random(flow, seed=5, scale=3.0)
    bijector = flow.bijector(params)
    y = bijector.forward(z)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(z, axis=-1),
                               rtol=1e-12)
    np.testing.assert_allclose(flow.bijector(params).inverse(y), z, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(bijector.forward_log_det_jacobian(z, event_ndims=1),
                                  np.zeros((SAMPLES, BATCH)))
    _, sign = _autodiff_log_det(flow.bijector(params), z)
    np.testing.assert_array_equal(sign, -np.ones((SAMPLES, BATCH)))   # 3 reflections
    zero = flow.bijector(np.zeros((BATCH, flow.params_size))).forward(z)
    np.testing.assert_array_equal(zero, z)   # v = 0 is the identity, not NaN


def test_planar_constraint_makes_an_adversarial_step_invertible():
    rng = np.random.default_rng(6)
    w = rng.normal(size=(BATCH, D))
    along = w / np.sum(w**2, -1, keepdims=True)
    u = rng.normal(size=(BATCH, D))
    u = u - np.sum(u * w, -1, keepdims=True) * along - 5 * along    # w^T u = -5
    b = rng.normal(size=(BATCH, 1))
    flow = PlanarFlow(D, 1)
    step, = _steps(flow.bijector(np.concatenate([u, w, b], -1)))
    wu_hat = np.sum(step.u_hat * w, -1)
    np.testing.assert_allclose(wu_hat, -1 + np.log1p(np.exp(-5.0)), rtol=1e-12)   # m(-5)
    assert np.all(wu_hat >= -1)

    # Along w the step is a -> a + (w^T u_hat) tanh(a + b), with a = w^T z:
    # strictly increasing, while the raw u would fold it (slope 1 - 5 at a = -b).
    t = np.linspace(-4, 4, 801)
    unit = w / np.linalg.norm(w, axis=-1, keepdims=True)
    z = rng.normal(size=(1, BATCH, D)) + t[:, None, None] * unit         # [801, batch, d]
    a_after = np.sum(step.forward(z) * w, -1)                           # [801, batch]
    assert np.all(np.diff(a_after, axis=0) > 0)
    a = np.sum(z * w, -1)
    assert np.any(np.diff(a - 5 * np.tanh(a + b[:, 0]), axis=0) < 0)

    # Jacobian determinant > 0 everywhere sampled, including where w^T z + b = 0.
    on_hinge = z[:1] - ((np.sum(z[:1] * w, -1) + b[:, 0]) / np.sum(w**2, -1))[..., None] * w
    _, sign = _autodiff_log_det(step, np.concatenate([z, on_hinge], 0))
    assert np.all(sign > 0)


@pytest.mark.parametrize("name", SYLVESTER)
def test_sylvester_diagonal_constraint_and_orthonormal_q(name):
    flow = FLOWS[name]()
    params, z = _random(flow, seed=8, scale=3.0)
    for t, step in enumerate(_steps(flow.bijector(params))):
        diag = np.diagonal(step.r, axis1=-2, axis2=-1) * np.diagonal(step.r_tilde, axis1=-2,
                                                                     axis2=-1)
        assert np.all(1 + np.minimum(diag, 0) > 0)     # 1 + R_ii R~_ii h' > 0 for all h' in (0, 1]
        basis = z[..., ::-1] if step.reverse else z
        if step.q is not None:
            basis = np.einsum("sbd,bdm->sbm", z, step.q)                  # Q^T z
        hidden = np.einsum("bij,sbj->sbi", step.r_tilde, basis) + step.b   # R~ Q^T z + b
        assert np.all(1 + diag * (1 - np.tanh(hidden)**2) > 0)
        np.testing.assert_array_equal(np.tril(step.r, -1), 0)
        np.testing.assert_array_equal(np.tril(step.r_tilde, -1), 0)
        if flow.variant == "triangular":
            assert step.q is None and step.reverse == (t % 2 == 1)
        else:
            m = flow.num_vectors
            assert step.q.shape == (BATCH, D, m)
            np.testing.assert_allclose(np.swapaxes(step.q, -1, -2) @ step.q,
                                       np.broadcast_to(np.eye(m), (BATCH, m, m)), atol=1e-12)


@pytest.mark.parametrize("name", ["planar", "sylvester_orthogonal", "sylvester_triangular"])
def test_no_closed_form_inverse(name):
    flow = FLOWS[name]()
    params, z = _random(flow)
    with pytest.raises(NotImplementedError, match="sample_and_log_prob"):
        flow.bijector(params).inverse(z)


def test_params_size_formulas():
    assert PlanarFlow(5, 2).params_size == 2 * (2 * 5 + 1)
    assert HouseholderFlow(5, 2).params_size == 2 * 5
    # M^2 + 2M (R, R~ and b) + the parameters of Q, per step.
    assert SylvesterFlow(5, 2, num_ortho_vectors=3).params_size == 2 * (9 + 6 + 15)
    assert SylvesterFlow(5, 2, "householder", num_householder=4).params_size == 2 * (
        25 + 10 + 20)
    assert SylvesterFlow(5, 2, "triangular").params_size == 2 * (25 + 10)
    config = SylvesterFlow(5, 2).get_config()
    assert (config["num_ortho_vectors"], config["num_householder"]) == (5, None)


@pytest.mark.parametrize("make, match", [
    (lambda: SylvesterFlow(D, 2, variant="qr"), "variant='qr'"),
    (lambda: PlanarFlow(D, 0), "num_flows=0"),
    (lambda: HouseholderFlow(0, 2), "latent_size=0"),
    (lambda: SylvesterFlow(D, 2, num_ortho_vectors=D + 1), "num_ortho_vectors=5"),
    (lambda: SylvesterFlow(D, 2, "householder", num_householder=0), "num_householder=0"),
    (lambda: SylvesterFlow(D, 2, "triangular", num_ortho_vectors=2), "num_ortho_vectors=2"),
    (lambda: SylvesterFlow(D, 2, num_householder=2), "num_householder=2"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", FLOWS)
def test_wrong_params_size(name):
    flow = FLOWS[name]()
    with pytest.raises(ValueError, match=r"`params` must have shape \[batch, "
                       + str(flow.params_size)):
        flow.bijector(np.zeros((BATCH, flow.params_size + 1)))
