"""The reparameterized gradient (book §2.4) against finite differences.

On the linear-Gaussian model the expected ELBO is known in closed form as a
function of the posterior parameters and the decoder bias; its central
finite differences must match the Monte-Carlo average of the
reparameterized single-sample gradients within their standard error.
"""

import numpy as np
import tensorflow as tf

from tests import linear_gaussian as lg


def _closed_form(weight, dec_bias, x, head_bias, kernel):
    """Expected ELBO summed over examples, as a function of the head bias."""
    params = x @ kernel + head_bias
    d = lg.Z_DIM
    loc, log_sigma, lower = params[:, :d], params[:, d:2 * d], params[:, 2 * d:]
    total = 0.0
    rows, cols = np.tril_indices(d, -1)
    for i in range(len(x)):
        scale_tril = np.diag(np.exp(log_sigma[i]))
        scale_tril[rows, cols] = lower[i]
        total += lg.expected_elbo(weight, dec_bias, x[i:i + 1], loc[i:i + 1], scale_tril)[0]
    return total


def test_reparameterized_gradient_matches_finite_differences():
    weight, dec_bias, x = lg.problem(seed=3)
    x = x[:3]
    a, c, scale_tril = lg.exact_posterior(weight, dec_bias)
    a, c, scale_tril = 0.5 * a, c - 0.4, 1.7 * scale_tril   # away from the optimum
    model = lg.build(weight, dec_bias, a, c, scale_tril, analytic_kl=False)
    kernel, head_bias = lg.head_values(a, c, scale_tril)
    x_img = tf.constant(x.reshape(-1, lg.X_DIM, 1, 1), tf.float32)
    variables = [model.latent._head.bias, model.decoder._out.bias]

    grads = []
    for s in range(20):
        with tf.GradientTape() as tape:
            objective = tf.reduce_sum(model.elbo(x_img, num_samples=2000, seed=(11, s)))
        grads.append(np.concatenate([g.numpy() for g in tape.gradient(objective, variables)]))
    grads = np.array(grads)
    mean, stderr = grads.mean(0), grads.std(0, ddof=1) / np.sqrt(len(grads))

    h = 1e-5
    fd = []
    point = np.concatenate([head_bias, dec_bias])
    n_head = len(head_bias)
    for j in range(len(point)):
        plus, minus = point.copy(), point.copy()
        plus[j] += h
        minus[j] -= h
        f = lambda p: _closed_form(weight, p[n_head:], x, p[:n_head], kernel)  # noqa: E731
        fd.append((f(plus) - f(minus)) / (2 * h))
    fd = np.array(fd)
    assert np.sum(np.abs(fd) > 0.5) >= len(fd) - 1   # a point where the gradient is informative
    np.testing.assert_array_less(np.abs(mean - fd), 4 * stderr + 2e-3)
