"""Inverse autoregressive flow posterior (book §3.3-3.4, Algorithm 3).

Kingma, Salimans, Jozefowicz, Chen, Sutskever and Welling, "Improved
Variational Inference with Inverse Autoregressive Flow" (NeurIPS 2016).
Starting from z_0 ~ q(z_0|x) = N(mu, sigma^2) (the base family), each of the
T steps does

    (m, s) <- MADE_t(z, h);  sigma <- sigmoid(s);  z <- sigma * z + (1 - sigma) * m
    log q  <- log q - sum_i log sigma_i

with h the context the encoder head emits for the flow. The variable ordering
is reversed between steps (MADE orderings alternate natural / reversed).

Initialization: the s-outputs' bias starts at +2 (the IAF paper's "+1 or +2"),
so sigma = sigmoid(2) ~ 0.88 and each step starts close to the identity
(the book: "initializing s so that sigma starts near 1").
"""

import functools

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.flows import base
from tfvae.nn import made as made_lib

tfb = tfp.bijectors

_PACKAGE = "tfvae"
_GATE_BIAS = 2.0  # Initial bias of s: sigma = sigmoid(2) ~ 0.88 at the start of training.


def _gated_update(made, context, z):
    """The elementwise bijector `tfb.MaskedAutoregressiveFlow(bijector_fn=...)` asks for.

    MAF(bijector_fn=b).inverse(y) = b(y).inverse(y) in one parallel pass, and
    MAF.forward runs the D-step sequential loop. So Invert(MAF) applies
    b(z).inverse(z) forward: returning Invert(update) makes the IAF step's
    forward exactly Algorithm 3's update, with (m, s) = MADE(z, h), and its
    forward log-det log|det dz'/dz| = sum_i log sigma_i (the Jacobian is
    triangular with diagonal sigma). The inverse, needed for log q at an
    arbitrary z, is MAF's sequential loop z_i = (z'_i - (1 - sigma_i) m_i) / sigma_i.

    The same step through `shift_and_log_scale_fn`: MAF's inverse is
    x = (y - shift) * exp(-log_scale); matching sigma * y + (1 - sigma) * m
    needs exp(-log_scale) = sigma, i.e. log_scale = softplus(-s), and
    -shift * sigma = (1 - sigma) * m, i.e. shift = -exp(-s) * m. We pass the
    update itself instead: exp(-s) overflows float32 for s < -88, and
    (y + exp(-s) m) * sigma cancels catastrophically when sigma is small.

    Args:
      made: the step's MADE (params=2, context_size > 0).
      context: h [batch, context_size].
      z: [..., batch, latent_size].

    Returns:
      An elementwise `tfb.Bijector` whose inverse is the gated update.
    """
    m, s = tf.unstack(made(z, context=context), axis=-1)  # [..., batch, latent_size] each
    # 1 - sigmoid(s) = sigmoid(-s) and log sigmoid(s) = -softplus(-s): stable for any s.
    update = tfb.Chain([tfb.Shift(tf.sigmoid(-s) * m), tfb.Scale(log_scale=-tf.nn.softplus(-s))])
    return tfb.Invert(update)


@keras.saving.register_keras_serializable(_PACKAGE)
class IAF(base.FlowLayer):
    """IAF posterior flow with context (Algorithm 3, §3.4).

    Args:
      latent_size: dimension d of z.
      num_flows: number of IAF steps T.
      hidden_units: hidden layer sizes of each step's MADE.
      context_size: size of the context h the encoder head emits (params_size).
      activation: hidden activation of the MADEs.
      seed: integer seed of the MADEs' kernel initializers (None: Keras' global seed).

    Call args:
      inputs: h [batch, context_size]; returned unchanged (see `FlowLayer`).

    Returns:
      (`bijector(h)`): a `tfb.Chain` of T steps acting on z [..., batch, d].
    """

    def __init__(self, latent_size, num_flows, hidden_units=(64, 64), context_size=32,
                 activation="relu", seed=None, **kwargs):
        super().__init__(latent_size, num_flows, **kwargs)
        self.context_size = made_lib.check_int(context_size, "context_size", 1)
        self.hidden_units = made_lib.check_units(hidden_units, "hidden_units")
        if seed is not None:
            made_lib.check_int(seed, "seed", 0)
        self.seed = seed
        self.activation = activation
        self._mades = [
            made_lib.MADE(self.latent_size, self.hidden_units, params=2,
                          context_size=self.context_size,
                          ordering=("natural", "reversed")[t % 2], seed=step_seed,
                          activation=activation, output_bias=(0.0, _GATE_BIAS),
                          dtype=self.dtype_policy, name=f"made_{t}")
            for t, step_seed in enumerate(made_lib.spawn_seeds(seed, self.num_flows))]

    @property
    def params_size(self):
        return self.context_size

    @property
    def mades(self):
        """The T MADEs, in the order the steps apply."""
        return list(self._mades)

    def build(self, input_shape):
        if input_shape[-1] != self.context_size:
            raise ValueError(f"IAF expects params [batch, {self.context_size}]. "
                             f"Received: input_shape={input_shape}")
        for made in self._mades:
            made.build((None, self.latent_size))

    def bijector(self, params):
        """Returns the T-step IAF bijector for the context h = params [batch, context_size]."""
        steps = [tfb.Invert(tfb.MaskedAutoregressiveFlow(
            bijector_fn=functools.partial(_gated_update, made, params)), name=f"iaf_{t}")
            for t, made in enumerate(self._mades)]
        return tfb.Chain(steps[::-1])  # A Chain applies its last bijector first.

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units),
                "context_size": self.context_size, "activation": self.activation,
                "seed": self.seed}
