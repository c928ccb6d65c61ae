"""Sylvester flows: amortized M-unit residual maps of z (book §3.2.2).

van den Berg et al. (2018) generalize the planar flow to M hidden units,

    z' = z + Q R h(R_tilde Q^T z + b),   h = tanh,

with Q [d, M] orthonormal columns and R, R_tilde [M, M] upper triangular.
Sylvester's determinant identity det(I_d + A B) = det(I_M + B A) makes the
Jacobian determinant that of an upper-triangular M x M matrix:

    log |det dz'/dz| = sum_i log |1 + R_ii R_tilde_ii h'(R_tilde Q^T z + b)_i|.

Following the paper, the diagonals are R_ii = tanh(.), R_tilde_ii = tanh(.):
then |R_ii R_tilde_ii| < 1 and h' in (0, 1], so every factor is positive and
the map is invertible. All of Q, R, R_tilde, b are emitted per datapoint
(amortized) by the encoder. Three ways to build Q:

- "orthogonal": Q [d, M] from an amortized d x M matrix A, orthonormalized
  by a QR factorization (see `_orthonormal_columns`).
- "householder": Q [d, d] = H_K ... H_1, a product of K amortized
  Householder reflections (M = d).
- "triangular": Q = I on even steps and the reversal permutation on odd
  steps (M = d), so that successive steps see the variables in both orders.

There is no closed-form inverse: use the flow in the sampling direction
(`experimental_sample_and_log_prob`).

References:
  R. van den Berg, L. Hasenclever, J. M. Tomczak and M. Welling. Sylvester
  Normalizing Flows for Variational Inference. UAI 2018.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.flows.base import FlowLayer
from tfvae.flows.householder import householder_matrix

tfb = tfp.bijectors
_PACKAGE = "tfvae"
VARIANTS = ("orthogonal", "householder", "triangular")


class SylvesterStep(tfb.Bijector):
    """One Sylvester step z' = z + Q R h(R_tilde Q^T z + b).

    The caller keeps 1 + R_ii R_tilde_ii h' away from zero (`SylvesterFlow`
    uses tanh diagonals).

    Args:
      r: upper-triangular R [batch, M, M].
      r_tilde: upper-triangular R_tilde [batch, M, M].
      b: bias [batch, M].
      q: Q [batch, d, M] with orthonormal columns, or None for a permutation
        (M = d): the identity, or the reversal of the d coordinates if
        `reverse`.
      reverse: with q=None, use Q = the reversal permutation.
      validate_args: Python bool, passed to `tfb.Bijector`.
      name: name of the bijector.
    """

    def __init__(self, r, r_tilde, b, q=None, reverse=False, validate_args=False,
                 name="sylvester_step"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._r = tf.convert_to_tensor(r)
            self._r_tilde = tf.convert_to_tensor(r_tilde, dtype=self._r.dtype)
            self._b = tf.convert_to_tensor(b, dtype=self._r.dtype)
            self._q = None if q is None else tf.convert_to_tensor(q, dtype=self._r.dtype)
            self._reverse = bool(reverse)
            super().__init__(forward_min_event_ndims=1, validate_args=validate_args,
                             parameters=parameters, dtype=self._r.dtype, name=name)

    @property
    def r(self):
        return self._r

    @property
    def r_tilde(self):
        return self._r_tilde

    @property
    def b(self):
        return self._b

    @property
    def q(self):
        """Q [batch, d, M], or None for a permutation (see `reverse`)."""
        return self._q

    @property
    def reverse(self):
        return self._reverse

    @classmethod
    def _parameter_properties(cls, dtype):
        return {"r": tfp.util.ParameterProperties(event_ndims=2),
                "r_tilde": tfp.util.ParameterProperties(event_ndims=2),
                "b": tfp.util.ParameterProperties(event_ndims=1),
                "q": tfp.util.ParameterProperties(event_ndims=2)}

    def _to_basis(self, x):
        """Q^T x: [..., batch, d] -> [..., batch, M]."""
        if self._q is not None:
            return tf.linalg.matvec(self._q, x, transpose_a=True)
        return tf.reverse(x, axis=[-1]) if self._reverse else x

    def _from_basis(self, y):
        """Q y: [..., batch, M] -> [..., batch, d]."""
        if self._q is not None:
            return tf.linalg.matvec(self._q, y)
        return tf.reverse(y, axis=[-1]) if self._reverse else y

    def _preactivation(self, x):
        return tf.linalg.matvec(self._r_tilde, self._to_basis(x)) + self._b   # [..., batch, M]

    def _forward(self, x):
        hidden = tf.tanh(self._preactivation(x))                          # [..., batch, M]
        return x + self._from_basis(tf.linalg.matvec(self._r, hidden))

    def _inverse(self, y):
        raise NotImplementedError(
            "The Sylvester flow has no closed-form inverse; use it in the sampling "
            "direction: TransformedDistribution.experimental_sample_and_log_prob "
            "gives the log-density of its own samples from the forward log-det.")

    def _forward_log_det_jacobian(self, x):
        diag = tf.linalg.diag_part(self._r) * tf.linalg.diag_part(self._r_tilde)   # [batch, M]
        dtanh = 1 - tf.square(tf.tanh(self._preactivation(x)))                    # h'
        return tf.reduce_sum(tf.math.log(tf.abs(1 + diag * dtanh)), axis=-1)      # [..., batch]


def _orthonormal_columns(matrix):
    """Q [..., d, M] with orthonormal columns spanning those of matrix [..., d, M].

    The paper orthonormalizes by the iteration A <- A (I + (I - A^T A) / 2),
    run until a convergence test passes (up to 100 steps). We use the reduced
    QR factorization instead: exact in one step, differentiable in TF for
    d >= M, and compiled by XLA, where a data-dependent stopping test is not
    (and a fixed number of steps converges slowly for ill-conditioned A).
    Both map the amortized matrix onto matrices with orthonormal columns;
    the iteration gives the polar factor, QR the Gram-Schmidt basis.
    """
    q, r = tf.linalg.qr(matrix)
    # QR is unique only up to the signs of the columns, and LAPACK and XLA may
    # choose them differently; flipping to a positive diagonal of R picks the
    # unique factorization, so Q is a continuous function of the parameters
    # and the same with or without jit_compile. (tf.sign would zero a column
    # when R_ii = 0.)
    diag = tf.linalg.diag_part(r)
    signs = tf.where(diag < 0, -tf.ones_like(diag), tf.ones_like(diag))
    return q * signs[..., tf.newaxis, :]


@keras.saving.register_keras_serializable(_PACKAGE)
class SylvesterFlow(FlowLayer):
    """Amortized Sylvester flow (van den Berg et al. 2018; book §3.2.2).

    Per step the encoder head emits, in this order: the strictly upper
    entries of R and of R_tilde (M(M-1)/2 each, row-major), the raw
    diagonals of R and R_tilde (M each, passed through tanh), b (M), and the
    parameters of Q: d*M for "orthogonal", num_householder*d for
    "householder", none for "triangular".

    Example:

        flow = SylvesterFlow(latent_size=8, num_flows=4, variant="householder",
                             num_householder=4)
        params = head(h)                        # [batch, flow.params_size]
        q = tfd.TransformedDistribution(q0, flow.bijector(params))
        z, log_q = q.experimental_sample_and_log_prob(seed=seed)

    Args:
      latent_size: dimension d of z.
      num_flows: number of Sylvester steps T.
      variant: "orthogonal", "householder" or "triangular" (how Q is built).
      num_ortho_vectors: M, the columns of Q for the "orthogonal" variant,
        1 <= M <= d; None means d. Only for that variant.
      num_householder: reflections K per Q for the "householder" variant;
        None means d. Only for that variant.
      **kwargs: passed to `keras.layers.Layer`.

    Raises:
      ValueError: for an unknown `variant`, or `num_ortho_vectors` /
        `num_householder` out of range or given to a variant that does not
        use it.
    """

    def __init__(self, latent_size, num_flows, variant="orthogonal", num_ortho_vectors=None,
                 num_householder=None, **kwargs):
        super().__init__(latent_size, num_flows, **kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}. Received: variant={variant!r}")
        self.variant = variant
        self.num_ortho_vectors = self._check_count(
            "num_ortho_vectors", num_ortho_vectors, "orthogonal", self.latent_size)
        self.num_householder = self._check_count(
            "num_householder", num_householder, "householder", None)
        m = self.num_vectors
        # Gather index building R from (0, strictly upper entries): index 0
        # reads a constant zero for the diagonal and everything below it.
        rows, cols = np.triu_indices(m, 1)
        index = np.zeros((m, m), np.int32)
        index[rows, cols] = np.arange(1, len(rows) + 1)
        self._triu_index = index.reshape(-1)

    def _check_count(self, name, value, variant, maximum):
        """Validates an optional count used only by `variant`; None means latent_size."""
        if self.variant != variant:
            if value is not None:
                raise ValueError(
                    f"`{name}` applies only to variant='{variant}'. "
                    f"Received: {name}={value!r} with variant={self.variant!r}")
            return None
        if value is None:
            return self.latent_size
        if not isinstance(value, (int, np.integer)) or value < 1 or (
                maximum is not None and value > maximum):
            bound = f" <= latent_size={maximum}" if maximum is not None else ""
            raise ValueError(
                f"`{name}` must be a positive integer{bound}. Received: {name}={value!r}")
        return int(value)

    @property
    def num_vectors(self):
        """M, the number of hidden units per step (columns of Q)."""
        return self.num_ortho_vectors if self.variant == "orthogonal" else self.latent_size

    @property
    def _q_size(self):
        if self.variant == "orthogonal":
            return self.latent_size * self.num_vectors
        if self.variant == "householder":
            return self.num_householder * self.latent_size
        return 0

    @property
    def params_size(self):
        """num_flows * (M^2 + 2M + q_size).

        M(M-1) strictly upper entries of R and R_tilde, 2M raw diagonals, M
        for b, and q_size = d*M ("orthogonal"), num_householder*d
        ("householder") or 0 ("triangular").
        """
        m = self.num_vectors
        return self.num_flows * (m * m + 2 * m + self._q_size)

    def _upper_triangular(self, strict, raw_diag):
        """R [batch, M, M] from strictly upper entries [batch, M(M-1)/2] and raw_diag [batch, M]."""
        m = self.num_vectors
        padded = tf.concat([tf.zeros_like(raw_diag[..., :1]), strict], axis=-1)
        upper = tf.gather(padded, self._triu_index, axis=-1)          # [batch, M*M]
        upper = tf.reshape(upper, tf.concat([tf.shape(raw_diag)[:-1], [m, m]], 0))
        # tanh diagonal (the paper's construction): |R_ii R_tilde_ii| < 1, so
        # with h' in (0, 1] every 1 + R_ii R_tilde_ii h' > 0: f is invertible.
        return upper + tf.linalg.diag(tf.tanh(raw_diag))

    def bijector(self, params):
        """Returns the chain of Sylvester steps.

        Args:
          params: [batch, params_size], step t in the block
            params[:, t*s:(t+1)*s] with s = params_size / num_flows, laid out
            as in the class docstring.

        Returns:
          A `tfb.Chain` of `SylvesterStep`s mapping z_0 [..., batch, d] to
          z_T [..., batch, d], with forward_log_det_jacobian [..., batch]; its
          inverse raises NotImplementedError.

        Raises:
          ValueError: if `params` has the wrong last dimension.
        """
        d, m = self.latent_size, self.num_vectors
        k = m * (m - 1) // 2
        steps = []
        for t, step in enumerate(self.split_steps(params, self.params_size // self.num_flows)):
            r_upper, r_tilde_upper, r_diag, r_tilde_diag, b, q_params = tf.split(
                step, [k, k, m, m, m, self._q_size], axis=-1)
            q = None
            if self.variant == "orthogonal":
                q = _orthonormal_columns(tf.reshape(
                    q_params, tf.concat([tf.shape(b)[:-1], [d, m]], 0)))   # [batch, d, M]
            elif self.variant == "householder":
                q = householder_matrix(tf.split(q_params, self.num_householder, axis=-1))
            steps.append(SylvesterStep(
                self._upper_triangular(r_upper, r_diag),
                self._upper_triangular(r_tilde_upper, r_tilde_diag), b, q=q,
                reverse=self.variant == "triangular" and t % 2 == 1,
                name=f"sylvester_{t}"))
        return tfb.Chain(steps[::-1], name="sylvester_flow")   # Chain applies the last first

    def get_config(self):
        return {**super().get_config(), "variant": self.variant,
                "num_ortho_vectors": self.num_ortho_vectors,
                "num_householder": self.num_householder}
