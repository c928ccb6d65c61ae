"""Planar flow: amortized single-unit residual maps of z (book §3.2.2).

Rezende & Mohamed (2015) transform q(z_0|x) by T steps

    f(z) = z + u_hat h(w^T z + b),   h = tanh,
    log |det df/dz| = log |1 + u_hat^T w h'(w^T z + b)|,

with u [d], w [d], b [1] emitted per datapoint by the encoder. f is
invertible iff w^T u_hat >= -1 (their appendix A.1); the raw u is
constrained to

    u_hat = u + (m(w^T u) - w^T u) w / ||w||^2,   m(a) = -1 + softplus(a),

so that w^T u_hat = m(w^T u) > -1. There is no closed-form inverse: use
the flow in the sampling direction (`experimental_sample_and_log_prob`).

References:
  D. J. Rezende and S. Mohamed. Variational Inference with Normalizing
  Flows. ICML 2015.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.flows.base import FlowLayer

tfb = tfp.bijectors
_PACKAGE = "tfvae"


class PlanarStep(tfb.Bijector):
    """One planar step f(z) = z + u_hat tanh(w^T z + b), u_hat constrained from u.

    Args:
      u: raw (unconstrained) u [batch, d].
      w: w [batch, d].
      b: b [batch].
      validate_args: Python bool, passed to `tfb.Bijector`.
      name: name of the bijector.
    """

    def __init__(self, u, w, b, validate_args=False, name="planar_step"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._w = tf.convert_to_tensor(w)
            u = tf.convert_to_tensor(u, dtype=self._w.dtype)
            self._b = tf.convert_to_tensor(b, dtype=self._w.dtype)
            wu = tf.reduce_sum(self._w * u, axis=-1)                 # [batch]
            sq_norm = tf.reduce_sum(tf.square(self._w), axis=-1)    # [batch]
            # The map a -> a + (w^T u_hat) tanh(a + b) along w has slope
            # 1 + (w^T u_hat) h' with h' in (0, 1]; it stays positive (f is
            # invertible) iff w^T u_hat >= -1, which m(a) = -1 + softplus(a)
            # guarantees. divide_no_nan: at w = 0 (a zero-initialized head) the
            # step is z + u tanh(b), already invertible, and 0/0 would be NaN.
            coef = tf.math.divide_no_nan(-1 + tf.math.softplus(wu) - wu, sq_norm)
            self._u_hat = u + coef[..., tf.newaxis] * self._w        # [batch, d]
            # 1 + w^T u_hat, computed as softplus(w^T u) rather than from u_hat:
            # for w^T u << 0, -1 + softplus rounds to -1 and the log-det would
            # see 0 or a rounding-negative argument (see _forward_log_det_jacobian).
            self._one_plus_wu_hat = tf.where(sq_norm > 0, tf.math.softplus(wu),
                                             tf.ones_like(wu))
            super().__init__(forward_min_event_ndims=1, validate_args=validate_args,
                             parameters=parameters, dtype=self._w.dtype, name=name)

    @property
    def u_hat(self):
        """Constrained u [batch, d] with w^T u_hat >= -1."""
        return self._u_hat

    @property
    def w(self):
        return self._w

    @property
    def b(self):
        return self._b

    @classmethod
    def _parameter_properties(cls, dtype):
        return {"u": tfp.util.ParameterProperties(event_ndims=1),
                "w": tfp.util.ParameterProperties(event_ndims=1),
                "b": tfp.util.ParameterProperties(event_ndims=0)}

    def _preactivation(self, x):
        return tf.reduce_sum(self._w * x, axis=-1) + self._b          # [..., batch]

    def _forward(self, x):
        return x + self._u_hat * tf.tanh(self._preactivation(x))[..., tf.newaxis]

    def _inverse(self, y):
        raise NotImplementedError(
            "The planar flow has no closed-form inverse; use it in the sampling "
            "direction: TransformedDistribution.experimental_sample_and_log_prob "
            "gives the log-density of its own samples from the forward log-det.")

    def _forward_log_det_jacobian(self, x):
        # det(I + u_hat h' w^T) = 1 + (w^T u_hat) h' = (1 - h') + (1 + w^T u_hat) h'
        # = tanh^2 + softplus(w^T u) h': a sum of non-negative terms, so no
        # rounding can make the argument of the log negative.
        tanh_sq = tf.square(tf.tanh(self._preactivation(x)))
        return tf.math.log(tanh_sq + self._one_plus_wu_hat * (1 - tanh_sq))   # [..., batch]


@keras.saving.register_keras_serializable(_PACKAGE)
class PlanarFlow(FlowLayer):
    """Amortized planar flow (Rezende & Mohamed 2015; book §3.2.2).

    The encoder head emits (u, w, b) per step; the bijector applies the T
    planar steps to z_0 and sums their log-dets, so that
    log q(z_T|x) = log q(z_0|x) - sum_t log |1 + u_hat_t^T w_t h'(w_t^T z_{t-1} + b_t)|.

    Example:

        flow = PlanarFlow(latent_size=8, num_flows=4)
        params = head(h)                        # [batch, flow.params_size]
        q = tfd.TransformedDistribution(q0, flow.bijector(params))
        z, log_q = q.experimental_sample_and_log_prob(seed=seed)

    Args:
      latent_size: dimension d of z.
      num_flows: number of planar steps T.
      **kwargs: passed to `keras.layers.Layer`.
    """

    @property
    def params_size(self):
        """num_flows * (2 * latent_size + 1): u [d], w [d], b [1] per step."""
        return self.num_flows * (2 * self.latent_size + 1)

    def bijector(self, params):
        """Returns the chain of planar steps.

        Args:
          params: [batch, num_flows * (2d + 1)]; step t reads the block
            params[:, t*(2d+1):(t+1)*(2d+1)] as (u [d], w [d], b [1]).

        Returns:
          A `tfb.Chain` mapping z_0 [..., batch, d] to z_T [..., batch, d],
          with forward_log_det_jacobian [..., batch]; its inverse raises
          NotImplementedError.

        Raises:
          ValueError: if `params` has the wrong last dimension.
        """
        d = self.latent_size
        steps = []
        for t, step in enumerate(self.split_steps(params, 2 * d + 1)):
            u, w, b = tf.split(step, [d, d, 1], axis=-1)
            steps.append(PlanarStep(u, w, b[..., 0], name=f"planar_{t}"))
        return tfb.Chain(steps[::-1], name="planar_flow")   # Chain applies the last first
