"""Householder flow: amortized orthogonal reflections of z (book §3.2.2).

Tomczak & Welling (2016) follow the diagonal Gaussian q(z_0|x) with T
reflections

    z_t = H_t z_{t-1},   H_t = I - 2 v_t v_t^T / ||v_t||^2,

each with its own vector v_t [d] emitted per datapoint by the encoder. H_t is
orthogonal and symmetric, so the flow is volume preserving
(log |det dz_t/dz_{t-1}| = 0) and every step is its own inverse; the
posterior gains full-covariance shape, z_T ~ N(H mu, H diag(sigma^2) H^T).

The reflection helpers here are shared with the Householder variant of the
Sylvester flow (`tfvae.flows.sylvester`), which builds its orthogonal
matrices from them.

References:
  J. M. Tomczak and M. Welling. Improving Variational Auto-Encoders using
  Householder Flow. arXiv:1611.09630, 2016.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.flows.base import FlowLayer

tfb = tfp.bijectors
_PACKAGE = "tfvae"


def reflect(v, x):
    """Applies H = I - 2 v v^T / ||v||^2 to the vectors x along the last axis.

    Args:
      v: reflection vectors [..., d], broadcasting against x.
      x: vectors [..., d].

    Returns:
      H x, shape of the broadcast of v and x.
    """
    # divide_no_nan: v = 0 (e.g. a zero-initialized head) gives the identity
    # instead of 0/0 = NaN. Unlike an epsilon added to ||v||^2, it keeps every
    # v != 0 an exact reflection, so the log-det of 0 stays true for small v.
    coef = tf.math.divide_no_nan(2 * tf.reduce_sum(v * x, axis=-1),
                                 tf.reduce_sum(tf.square(v), axis=-1))
    return x - coef[..., tf.newaxis] * v


def householder_matrix(vectors):
    """Returns Q = H_K ... H_1, the product of reflections, an orthogonal matrix.

    Args:
      vectors: list of K reflection vectors v_k [batch, d] (H_1 first).

    Returns:
      Q [batch, d, d] with Q^T Q = I.
    """
    d = vectors[0].shape[-1]
    batch = tf.shape(vectors[0])[:-1]
    # The rows of Q^T = H_1 ... H_K (H_k symmetric) are reflected in turn:
    # row r of Y H_k is H_k applied to row r of Y.
    q_t = tf.broadcast_to(tf.eye(d, dtype=vectors[0].dtype),
                          tf.concat([batch, [d, d]], 0))   # [batch, d, d]
    for v in vectors:
        q_t = reflect(v[..., tf.newaxis, :], q_t)
    return tf.linalg.matrix_transpose(q_t)


class HouseholderReflection(tfb.Bijector):
    """One Householder step z -> (I - 2 v v^T / ||v||^2) z (volume preserving).

    Args:
      v: reflection vectors [batch, d]; z [..., batch, d] broadcasts against it.
      validate_args: Python bool, passed to `tfb.Bijector`.
      name: name of the bijector.
    """

    def __init__(self, v, validate_args=False, name="householder_reflection"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._v = tf.convert_to_tensor(v)
            super().__init__(forward_min_event_ndims=1, is_constant_jacobian=True,
                             validate_args=validate_args, parameters=parameters,
                             dtype=self._v.dtype, name=name)

    @property
    def v(self):
        """Reflection vectors [batch, d]."""
        return self._v

    @classmethod
    def _parameter_properties(cls, dtype):
        return {"v": tfp.util.ParameterProperties(event_ndims=1)}

    def _forward(self, x):
        return reflect(self._v, x)

    def _inverse(self, y):
        # A reflection is its own inverse.
        return reflect(self._v, y)

    def _forward_log_det_jacobian(self, x):
        shape = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(self._v)[:-1])
        return tf.zeros(shape, self.dtype)   # [..., batch]: |det H| = 1


@keras.saving.register_keras_serializable(_PACKAGE)
class HouseholderFlow(FlowLayer):
    """Amortized Householder flow (Tomczak & Welling 2016; book §3.2.2).

    The encoder head emits one vector v_t [d] per step; the bijector is
    z_T = H_T ... H_1 z_0 with log |det| = 0, and has an exact inverse.

    Example:

        flow = HouseholderFlow(latent_size=8, num_flows=4)
        params = head(h)                        # [batch, flow.params_size]
        q = tfd.TransformedDistribution(q0, flow.bijector(params))

    Args:
      latent_size: dimension d of z.
      num_flows: number of reflections T.
      **kwargs: passed to `keras.layers.Layer`.
    """

    @property
    def params_size(self):
        """num_flows * latent_size: one v_t [d] per step."""
        return self.num_flows * self.latent_size

    def bijector(self, params):
        """Returns the chain of reflections.

        Args:
          params: [batch, num_flows * latent_size]; step t reads v_t from
            params[:, t*d:(t+1)*d].

        Returns:
          A `tfb.Chain` mapping z_0 [..., batch, d] to z_T [..., batch, d],
          with forward_log_det_jacobian [..., batch] equal to zero.

        Raises:
          ValueError: if `params` has the wrong last dimension.
        """
        vectors = self.split_steps(params, self.latent_size)
        steps = [HouseholderReflection(v, name=f"householder_{t}")
                 for t, v in enumerate(vectors)]
        return tfb.Chain(steps[::-1], name="householder_flow")   # Chain applies the last first
