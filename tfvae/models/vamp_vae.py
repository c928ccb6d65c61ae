"""VampVAE: the VAE with the VampPrior (Tomczak & Welling 2018).

Only the prior differs from `VAE`: `prior()` encodes the learned
pseudo-inputs of a `vamp.VampPrior` with the model's own encoder and returns
the uniform mixture of those posteriors. The KL is Monte Carlo (the mixture
has no closed-form KL); training, evaluation and the export are the VAE's.
"""

import keras

from tfvae.distributions import priors
from tfvae.objectives import base as objective_base
from tfvae.objectives import elbo
from tfvae.distributions import vamp
from tfvae.models import base
from tfvae.models import vae


@keras.saving.register_keras_serializable(vae._PACKAGE)
class VampVAE(vae.VAE):
    """A VAE with p(z) = (1/K) sum_k q(z|u_k) over learned pseudo-inputs u_k.

    Args:
      encoder, decoder, latent, likelihood, seed, **kwargs: as in `VAE`;
        `latent` keeps its default standard-normal prior layer, which the
        model never uses (`prior()` is the VampPrior).
      vamp_prior: a `vamp.VampPrior` over images of the likelihood's shape.
      objective: as in `VAE`, with the Monte-Carlo KL (None:
        `ELBO(analytic_kl=False)`; the mixture prior has no closed form).

    Raises:
      ValueError: a `vamp_prior` that is not a VampPrior of the image shape,
        or a latent layer with another prior; from the objective, an
        analytic KL or per-dimension free bits.
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, vamp_prior, objective=None,
                 **kwargs):
        super().__init__(encoder, decoder, latent, likelihood,
                         objective=elbo.ELBO(analytic_kl=False) if objective is None
                         else objective, **kwargs)
        self.vamp_prior = base.deserialize(vamp_prior)
        if not isinstance(self.vamp_prior, vamp.VampPrior) or (
                self.vamp_prior.image_shape != self.image_shape):
            raise ValueError(f"`vamp_prior` must be a VampPrior over images of shape "
                             f"{self.image_shape}. Received: vamp_prior={vamp_prior!r}")
        if not isinstance(self.latent.prior_layer, priors.StandardNormal):
            raise ValueError("The VampPrior replaces the latent layer's prior; leave that one "
                             "at its default. Received: latent prior="
                             f"{type(self.latent.prior_layer).__name__}")

    def build(self, input_shape):
        super().build(input_shape)
        if not self.vamp_prior.built:
            self.vamp_prior.build()

    def kl_support(self):
        """The mixture prior has neither a closed-form nor a per-dimension KL."""
        return objective_base.KLSupport(analytic=False, per_dimension=False,
                                        group_sizes=(self.latent.latent_size,))

    def prior(self):
        """p(z) = (1/K) sum_k q(z|u_k): event shape [latent_size] (Tomczak & Welling, eq. 9)."""
        return self.vamp_prior.distribution(self.encode(self.vamp_prior.pseudo_inputs()))

    def get_config(self):
        return {**super().get_config(),
                "vamp_prior": keras.saving.serialize_keras_object(self.vamp_prior)}
