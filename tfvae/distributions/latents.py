"""The latent layer: head network + posterior family (+ flow) + prior (book §2.1, §3.2).

`LatentLayer` maps the encoder's features h [batch, features] to the
parameters of q(z|x) (a tensor, as Keras 3 layers must return) and exposes
the distributions through `posterior(h)` and `prior()`. With a posterior
flow, the head also emits the flow's per-datapoint parameters (an IAF's
context, a planar flow's u, w, b, ...) and q(z|x) is the base family pushed
through the flow's bijector (book §3.2.2).
"""

import keras
import tensorflow_probability as tfp

from tfvae.distributions import families as families_lib
from tfvae.distributions import priors as priors_lib
from tfvae.flows import base as flows_base

tfd = tfp.distributions

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class LatentLayer(keras.layers.Layer):
    """One stochastic layer: q(z|x) from encoder features, with its prior p(z).

    Args:
      posterior: a posterior family (`DiagonalGaussian`,
        `FullCovarianceGaussian`, ...) defining q(z|x) and the latent size.
      prior: a prior layer with `distribution()`; defaults to
        `StandardNormal(posterior.latent_size)`.
      flow: an optional `FlowLayer` applied to samples of the base posterior.

    Call args:
      inputs: encoder features h [batch, features].

    Returns:
      Posterior parameters [batch, params_size]: the base family's, then the
      flow's.
    """

    def __init__(self, posterior, prior=None, flow=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(posterior, dict):
            posterior = keras.saving.deserialize_keras_object(posterior)
        if not isinstance(posterior, families_lib.Family) or not hasattr(posterior, "latent_size"):
            raise ValueError(
                "`posterior` must be a posterior family with a `latent_size` "
                f"(e.g. DiagonalGaussian). Received: posterior={posterior!r}")
        if isinstance(prior, dict):
            prior = keras.saving.deserialize_keras_object(prior)
        self.posterior_family = posterior
        self.latent_size = posterior.latent_size
        self.prior_layer = prior if prior is not None else priors_lib.StandardNormal(
            self.latent_size, name="prior")
        if getattr(self.prior_layer, "latent_size", self.latent_size) != self.latent_size:
            raise ValueError(
                f"`prior` latent size {self.prior_layer.latent_size} does not match the "
                f"posterior's {self.latent_size}. Received: prior={prior!r}")
        if isinstance(flow, dict):
            flow = keras.saving.deserialize_keras_object(flow)
        if flow is not None and (not isinstance(flow, flows_base.FlowLayer)
                                 or flow.latent_size != self.latent_size):
            raise ValueError(
                f"`flow` must be a FlowLayer with latent_size={self.latent_size}. "
                f"Received: flow={flow!r}")
        self.flow = flow
        self.params_size = posterior.params_size + (flow.params_size if flow else 0)
        self._head = keras.layers.Dense(self.params_size, name="head")

    def build(self, input_shape):
        self._head.build(input_shape)
        if not self.prior_layer.built:
            self.prior_layer.build((None, self.latent_size))
        if self.flow is not None and not self.flow.built:
            self.flow.build((None, self.flow.params_size))

    def call(self, inputs):
        return self._head(inputs)

    def posterior(self, h):
        """Returns q(z|x): batch shape [batch], event shape [latent_size]."""
        return self.posterior_from_params(self(h))

    def posterior_from_params(self, params):
        """q(z) of the posterior parameters [batch, params_size] (the head's output, or
        per-example local parameters, `tfvae.evaluation.local_posterior`)."""
        base_size = self.posterior_family.params_size
        base = self.posterior_family.make(params[..., :base_size])
        if self.flow is None:
            return base
        return tfd.TransformedDistribution(base, self.flow.bijector(params[..., base_size:]))

    def prior(self):
        """Returns p(z): event shape [latent_size]."""
        return self.prior_layer.distribution()

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.params_size)

    def get_config(self):
        return {**super().get_config(),
                "posterior": keras.saving.serialize_keras_object(self.posterior_family),
                "prior": keras.saving.serialize_keras_object(self.prior_layer),
                "flow": None if self.flow is None else keras.saving.serialize_keras_object(self.flow)}
