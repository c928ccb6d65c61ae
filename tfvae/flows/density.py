"""Flow density models as learned priors p(z) (book §4.4).

    p(z) = TransformedDistribution(N(0, I), f_T o ... o f_1),
    log p(z) = log N(f^{-1}(z); 0, I) + log |det d f^{-1}(z) / dz|

with f_t either a masked autoregressive flow step (MAF, Papamakarios, Pavlakou
and Murray, NeurIPS 2017) or an affine coupling step (RealNVP, Dinh,
Sohl-Dickstein and Bengio, ICLR 2017). Both evaluate log p(z) in one parallel
pass per step; MAF samples sequentially (D passes per step), RealNVP in one.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.nn import made as made_lib

tfb = tfp.bijectors
tfd = tfp.distributions

_PACKAGE = "tfvae"
FLOWS = ("maf", "realnvp")
# Bound on every step's log-scale: log_scale = B * tanh(raw / B) is ~raw near 0 but stays in
# (-B, B), so a step scales by at most e^3 ~ 20: exp(log_scale) cannot overflow and a
# randomly initialized or badly stepped network cannot collapse the density.
_LOG_SCALE_BOUND = 3.0


def _bounded(log_scale):
    return _LOG_SCALE_BOUND * tf.tanh(log_scale / _LOG_SCALE_BOUND)


@keras.saving.register_keras_serializable(_PACKAGE)
class CouplingNet(keras.layers.Layer):
    """The MLP of an affine coupling step: x_a [..., n_in] -> [..., output_units, 2].

    Args:
      output_units: number of transformed dimensions.
      hidden_units: sizes of the hidden Dense layers.
      activation: Keras activation of the hidden layers.
      seed: integer seed of the kernel initializers (None: Keras' global seed).

    Call args:
      inputs: the conditioning half [..., n_in] (any leading dimensions).

    Returns:
      [..., output_units, 2]: (shift, unbounded log-scale) per transformed dimension.
    """

    def __init__(self, output_units, hidden_units, activation="relu", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.output_units = made_lib.check_int(output_units, "output_units", 1)
        self.hidden_units = made_lib.check_units(hidden_units, "hidden_units")
        self.activation = activation
        keras.activations.get(activation)  # Raises ValueError for an unknown name.
        if seed is not None:
            made_lib.check_int(seed, "seed", 0)
        self.seed = seed
        seeds = made_lib.spawn_seeds(seed, len(self.hidden_units) + 1)
        self._dense = [
            keras.layers.Dense(units, activation=activation, name=f"dense_{i}",
                               dtype=self.dtype_policy,
                               kernel_initializer=keras.initializers.GlorotUniform(seed=s))
            for i, (units, s) in enumerate(zip(self.hidden_units, seeds))]
        self._dense.append(keras.layers.Dense(
            2 * self.output_units, name="dense_out", dtype=self.dtype_policy,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[-1])))

    def build(self, input_shape):
        n = input_shape[-1]
        for layer in self._dense:
            layer.build((None, n))
            n = layer.units

    def call(self, inputs):
        x = inputs
        for layer in self._dense:
            x = layer(x)
        n = self.output_units
        return keras.ops.stack([x[..., :n], x[..., n:]], axis=-1)  # [..., n, 2]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_units, 2)

    def get_config(self):
        return {**super().get_config(), "output_units": self.output_units,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "seed": self.seed}


@keras.saving.register_keras_serializable(_PACKAGE)
class FlowPrior(keras.layers.Layer):
    """A learned flow prior p(z) (§4.4): MAF or RealNVP on a standard normal.

    MAF steps are MADEs with orderings alternating natural / reversed; RealNVP
    steps transform the last d - d // 2 dimensions given the first d // 2,
    with the dimensions reversed (`tfb.Permute`) between steps so that each
    half conditions the other. Both bound the log-scale (see _LOG_SCALE_BOUND).

    Args:
      latent_size: dimension d of z (>= 2 for RealNVP).
      flow: "maf" or "realnvp".
      num_flows: number of flow steps T.
      hidden_units: hidden sizes of each step's network.
      seed: integer seed of the networks' kernel initializers (None: Keras' global seed).

    Call args:
      inputs: z [..., latent_size].

    Returns:
      log p(z) [...]. `distribution()` returns p(z), a TransformedDistribution
      with event shape [latent_size] and empty batch shape.
    """

    def __init__(self, latent_size, flow="maf", num_flows=4, hidden_units=(64, 64), seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        if flow not in FLOWS:
            raise ValueError(f"`flow` must be one of {FLOWS}. Received: flow={flow!r}")
        self.latent_size = made_lib.check_int(latent_size, "latent_size",
                                              2 if flow == "realnvp" else 1)
        self.flow = flow
        self.num_flows = made_lib.check_int(num_flows, "num_flows", 1)
        self.hidden_units = made_lib.check_units(hidden_units, "hidden_units")
        if seed is not None:
            made_lib.check_int(seed, "seed", 0)
        self.seed = seed
        seeds = made_lib.spawn_seeds(seed, self.num_flows)
        if flow == "maf":
            self._nets = [
                made_lib.MADE(self.latent_size, self.hidden_units, params=2,
                              ordering=("natural", "reversed")[t % 2], seed=s,
                              dtype=self.dtype_policy, name=f"made_{t}")
                for t, s in enumerate(seeds)]
        else:
            self._nets = [
                CouplingNet(self.latent_size - self.latent_size // 2, self.hidden_units,
                            seed=s, dtype=self.dtype_policy, name=f"coupling_{t}")
                for t, s in enumerate(seeds)]

    def build(self, input_shape):
        if input_shape[-1] != self.latent_size:
            raise ValueError(f"FlowPrior expects z [..., {self.latent_size}]. "
                             f"Received: input_shape={input_shape}")
        n_in = self.latent_size if self.flow == "maf" else self.latent_size // 2
        for net in self._nets:
            net.build((None, n_in))

    def bijector(self):
        """Returns the flow f = f_T o ... o f_1 mapping N(0, I) samples to z."""
        if self.flow == "maf":
            steps = [tfb.MaskedAutoregressiveFlow(
                shift_and_log_scale_fn=lambda x, net=net: self._shift_and_log_scale(net(x)),
                name=f"maf_{t}") for t, net in enumerate(self._nets)]
        else:
            reverse = tfb.Permute(np.arange(self.latent_size)[::-1].copy())
            steps = []
            for t, net in enumerate(self._nets):
                if t:
                    steps.append(reverse)
                steps.append(tfb.RealNVP(
                    num_masked=self.latent_size // 2,
                    shift_and_log_scale_fn=lambda x, _, net=net: self._shift_and_log_scale(net(x)),
                    name=f"realnvp_{t}"))
        return tfb.Chain(steps[::-1])  # A Chain applies its last bijector first.

    @staticmethod
    def _shift_and_log_scale(params):
        shift, log_scale = tf.unstack(params, axis=-1)
        return shift, _bounded(log_scale)

    def distribution(self):
        """Returns p(z), event shape [latent_size]."""
        if not self.built:
            self.build((None, self.latent_size))
        zeros = tf.zeros([self.latent_size], dtype=self.compute_dtype)
        return tfd.TransformedDistribution(
            tfd.MultivariateNormalDiag(loc=zeros, scale_diag=tf.ones_like(zeros)),
            self.bijector())

    def call(self, inputs):
        """Returns log p(z) [...] for z [..., latent_size]."""
        return self.distribution().log_prob(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size, "flow": self.flow,
                "num_flows": self.num_flows, "hidden_units": list(self.hidden_units),
                "seed": self.seed}
