"""`gumbel_vae`: categorical latents with the Gumbel-softmax relaxation.

Jang et al. (2017), Maddison et al. (2017); book §4.5. N = 30 categorical
variables with K = 10 classes (Jang et al.'s MNIST setting), uniform prior,
the reference MLP 784-512-512 encoder/decoder, Bernoulli p(x|z). The
temperature anneals as tau = max(tau_min, tau_0 exp(-r step)); the training
KL is the closed form between the categoricals ("discrete") or the relaxed
log-density ratio ("relaxed"). The reported IS log-likelihood uses the exact
categorical posterior and prior.

    python -m zoo.gumbel_vae --workdir=/tmp/gumbel --dataset=fashion_mnist
"""

import dataclasses

from tfvae.distributions import discrete_latents
from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.training import train
from tfvae.models import gumbel_vae
from tfvae import validation
from zoo import vae


@dataclasses.dataclass
class Config(train.TrainConfig):
    """The `gumbel_vae` entry's options.

    Attributes:
      latent_size: N, the number of categorical latent variables.
      num_categories: K, classes per variable.
      hidden_units: widths of the MLP's hidden layers (the decoder mirrors them).
      conv_filters: channels of the conv encoder (the decoder mirrors them).
      network: "mlp" or "conv".
      activation: activation of the hidden layers.
      temperature: tau_0, the initial Gumbel-softmax temperature.
      min_temperature: tau_min, the annealing floor.
      anneal_rate: r, the annealing rate per optimizer step.
      straight_through: one-hot forward pass with the relaxed gradient.
      kl_estimator: "discrete" (closed-form KL of the categoricals) or
        "relaxed" (log-density ratio of the relaxed distributions).
      beta: weight of the KL term (1 = the ELBO).
      free_bits: free bits lambda in nats on the total KL; 0 disables.
    """

    latent_size: int = 30
    num_categories: int = 10
    hidden_units: tuple = (512, 512)
    conv_filters: tuple = (32, 64)
    network: str = "mlp"
    activation: str = "relu"
    temperature: float = 1.0
    min_temperature: float = 0.5
    anneal_rate: float = 3e-4
    straight_through: bool = False
    kl_estimator: str = "discrete"
    beta: float = 1.0
    free_bits: float = 0.0

    def validate(self):
        super().validate()
        validation.one_of("network", self.network, vae.NETWORKS)
        validation.one_of("kl_estimator", self.kl_estimator, discrete_latents.KL_ESTIMATORS)
        validation.at_least("latent_size", self.latent_size, 1)
        validation.at_least("num_categories", self.num_categories, 2)
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"`hidden_units` must be positive integers. "
                             f"Received: hidden_units={self.hidden_units!r}")


def build_model(config, info):
    """The Gumbel-softmax VAE for `config` on images of `info.image_shape`."""
    image_shape = tuple(info.image_shape)
    likelihood = families.Bernoulli(image_shape)
    encoder, decoder = vae.build_networks(config, image_shape, likelihood.params_size, 1)
    posterior = discrete_latents.RelaxedCategorical(config.latent_size, config.num_categories)
    prior = discrete_latents.UniformCategoricalPrior(config.latent_size, config.num_categories,
                                                     name="prior")
    latent = latents.LatentLayer(posterior, prior=prior, name="latent")
    return gumbel_vae.GumbelVAE(
        encoder, decoder, latent, likelihood, temperature=config.temperature,
        min_temperature=config.min_temperature, anneal_rate=config.anneal_rate,
        straight_through=config.straight_through, kl_estimator=config.kl_estimator,
        objective=vae.elbo_objective(config, analytic_kl=False), seed=config.seed,
        name="gumbel_vae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
