"""`vae`: the book's chapter-2 VAE (§1.7.3, §2.5, Algorithm 1).

Factorized Gaussian q(z|x), standard-normal p(z), Bernoulli p(x|z); the
reference MLP 784-512-512 -> 32 -> 512-512-784 with ReLU, Adam 1e-3, batch
128. `--posterior=fullcov` gives Algorithm 2's posterior (see `vae_fullcov`);
`--network=conv` a small convolutional encoder/decoder; `--likelihood=gaussian`
a Gaussian p(x|z) with learned per-pixel scale for grey values.

    python -m zoo.vae --workdir=/tmp/vae --dataset=fashion_mnist
"""

import dataclasses

from tfvae import families
from tfvae import latents
from tfvae import networks
from tfvae import train
from tfvae.models import VAE

NETWORKS = ("mlp", "conv")
POSTERIORS = ("diagonal", "fullcov")
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclasses.dataclass
class Config(train.TrainConfig):
    """The `vae` entry's options.

    Attributes:
      latent_size: dimension of z.
      hidden_units: widths of the MLP's hidden layers (encoder; the decoder mirrors them).
      conv_filters: channels of the conv encoder (the decoder mirrors them).
      network: "mlp" or "conv".
      activation: activation of the hidden layers.
      posterior: "diagonal" (§2.5) or "fullcov" (Algorithm 2, §2.5.1).
      likelihood: "bernoulli" (§1.7.3) or "gaussian" (learned per-pixel scale).
      analytic_kl: closed-form KL (True) or the Monte-Carlo estimate (False).
      beta: weight of the KL term (1 = the ELBO).
      kl_warmup_steps: linear KL warm-up over this many steps (§2.8.1); 0 disables.
      free_bits: free bits lambda in nats per latent group (§2.8.1); 0 disables.
      free_bits_groups: number of latent groups for free bits.
    """

    latent_size: int = 32
    hidden_units: tuple = (512, 512)
    conv_filters: tuple = (32, 64)
    network: str = "mlp"
    activation: str = "relu"
    posterior: str = "diagonal"
    likelihood: str = "bernoulli"
    analytic_kl: bool = True
    beta: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0
    free_bits_groups: int = 1

    def validate(self):
        super().validate()
        for name, allowed in (("network", NETWORKS), ("posterior", POSTERIORS),
                              ("likelihood", LIKELIHOODS)):
            train._one_of(name, getattr(self, name), allowed)
        train._at_least("latent_size", self.latent_size, 1)
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"`hidden_units` must be positive integers. "
                             f"Received: hidden_units={self.hidden_units!r}")


def build_networks(config, image_shape, params_size, params_per_pixel):
    """Returns (encoder, decoder) for `config.network`."""
    if config.network == "conv":
        encoder = networks.ConvEncoder(config.conv_filters, config.hidden_units[-1],
                                       activation=config.activation, name="encoder")
        decoder = networks.ConvDecoder(image_shape, tuple(reversed(config.conv_filters)),
                                       params_per_pixel * image_shape[-1],
                                       activation=config.activation, name="decoder")
    else:
        hidden = tuple(config.hidden_units)
        encoder = networks.MLP(hidden[:-1], hidden[-1], activation=config.activation,
                               output_activation=config.activation, name="encoder")
        decoder = networks.MLP(tuple(reversed(hidden)), params_size,
                               activation=config.activation, name="decoder")
    return encoder, decoder


def build_model(config, info):
    """The VAE for `config` on images of `info.image_shape`."""
    image_shape = tuple(info.image_shape)
    if config.likelihood == "gaussian":
        likelihood, per_pixel = families.Gaussian(image_shape), 2
    else:
        likelihood, per_pixel = families.Bernoulli(image_shape), 1
    posterior = (families.FullCovarianceGaussian(config.latent_size)
                 if config.posterior == "fullcov"
                 else families.DiagonalGaussian(config.latent_size))
    encoder, decoder = build_networks(config, image_shape, likelihood.params_size, per_pixel)
    return VAE(encoder, decoder, latents.LatentLayer(posterior, name="latent"), likelihood,
               analytic_kl=config.analytic_kl, beta=config.beta,
               kl_warmup_steps=config.kl_warmup_steps, free_bits=config.free_bits,
               free_bits_groups=config.free_bits_groups, seed=config.seed, name="vae")


if __name__ == "__main__":
    from zoo import common
    import sys
    common.main(sys.modules[__name__])
