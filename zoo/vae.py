"""`vae`: the book's chapter-2 VAE (§1.7.3, §2.5, Algorithm 1).

Factorized Gaussian q(z|x), standard-normal p(z), Bernoulli p(x|z); the
reference MLP 784-512-512 -> 32 -> 512-512-784 with ReLU, Adam 1e-3, batch
128. `--posterior=fullcov` gives Algorithm 2's posterior (see `vae_fullcov`);
`--flow=iaf|planar|householder|sylvester` a flow posterior (ch. 3; see
`vae_iaf`, ...); `--prior=maf|realnvp` a learned flow prior (§4.4, see
`vae_flow_prior`); `--network=conv` a small convolutional encoder/decoder;
`--likelihood=gaussian` a Gaussian p(x|z) with learned per-pixel scale.

    python -m zoo.vae --workdir=/tmp/vae --dataset=fashion_mnist
"""

import collections
import dataclasses

from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.training import train
from tfvae.flows import density
from tfvae.flows import householder
from tfvae.flows import iaf
from tfvae.flows import planar
from tfvae.flows import sylvester
from tfvae.models import VAE
from tfvae.objectives.elbo import ELBO
from tfvae import validation

NETWORKS = ("mlp", "conv")
POSTERIORS = ("diagonal", "fullcov")
LIKELIHOODS = ("bernoulli", "gaussian")
FLOWS = ("none", "iaf", "planar", "householder", "sylvester")
SYLVESTER_VARIANTS = ("orthogonal", "householder", "triangular")
PRIORS = ("standard_normal", "maf", "realnvp")


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
      flow: posterior flow (ch. 3): "none", "iaf" (Algorithm 3), "planar",
        "householder" or "sylvester"; needs analytic_kl=false.
      num_flows: number of flow steps T.
      flow_hidden_units: hidden widths of each IAF step's MADE.
      flow_context_size: size of the context h the encoder gives the IAF.
      sylvester_variant: "orthogonal", "householder" or "triangular".
      sylvester_vectors: orthonormal vectors M per Sylvester step (orthogonal
        variant) or Householder reflections per step (householder variant).
      prior: "standard_normal", or a learned flow prior "maf" / "realnvp"
        (§4.4; needs analytic_kl=false).
      prior_num_flows: flow steps of a learned prior.
      prior_hidden_units: hidden widths of the learned prior's networks.
      eval_num_samples: K of the final test IS log-likelihood (book §2.6; 0 skips it).
        The default 200 keeps the quickstart's evaluation (the 10,000 Fashion-MNIST
        test images, reference network) to about a minute on a 2-core CPU (40-54 s
        measured on a 2-core Xeon shared with other jobs); papers report K = 5000.
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
    flow: str = "none"
    num_flows: int = 4
    flow_hidden_units: tuple = (256, 256)
    flow_context_size: int = 256
    sylvester_variant: str = "orthogonal"
    sylvester_vectors: int = 8
    prior: str = "standard_normal"
    prior_num_flows: int = 4
    prior_hidden_units: tuple = (256, 256)
    eval_num_samples: int = 200

    def validate(self):
        super().validate()
        for name, allowed in (("network", NETWORKS), ("posterior", POSTERIORS),
                              ("likelihood", LIKELIHOODS), ("flow", FLOWS),
                              ("sylvester_variant", SYLVESTER_VARIANTS), ("prior", PRIORS)):
            validation.one_of(name, getattr(self, name), allowed)
        for name in ("latent_size", "num_flows", "flow_context_size", "prior_num_flows",
                     "sylvester_vectors"):
            validation.at_least(name, getattr(self, name), 1)
        if self.analytic_kl and (self.flow != "none" or self.prior != "standard_normal"):
            raise ValueError(
                "A flow posterior or a learned prior has no closed-form KL: use "
                f"--analytic_kl=false. Received: analytic_kl=True, flow={self.flow!r}, "
                f"prior={self.prior!r}")
        if self.flow != "none" and self.posterior != "diagonal":
            raise ValueError("A posterior flow starts from the diagonal Gaussian. "
                             f"Received: posterior={self.posterior!r}, flow={self.flow!r}")
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"`hidden_units` must be positive integers. "
                             f"Received: hidden_units={self.hidden_units!r}")
        self.objective()            # its options are checked before anything is written
        # Against the latent size too (the model would refuse it only once built).
        validation.divides("free_bits_groups", self.free_bits_groups, (self.latent_size,))

    def objective(self):
        """The training objective of these options (the ELBO; variants return theirs)."""
        return elbo_objective(self)


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


def build_flow(config):
    """The posterior flow layer for `config.flow` (None for "none")."""
    d, steps = config.latent_size, config.num_flows
    if config.flow == "iaf":
        return iaf.IAF(d, steps, hidden_units=tuple(config.flow_hidden_units),
                       context_size=config.flow_context_size, name="flow")
    if config.flow == "planar":
        return planar.PlanarFlow(d, steps, name="flow")
    if config.flow == "householder":
        return householder.HouseholderFlow(d, steps, name="flow")
    if config.flow == "sylvester":
        variant, vectors = config.sylvester_variant, config.sylvester_vectors
        return sylvester.SylvesterFlow(
            d, steps, variant=variant,
            num_ortho_vectors=vectors if variant == "orthogonal" else None,
            num_householder=vectors if variant == "householder" else None, name="flow")
    return None


def build_prior(config):
    """The prior layer for `config.prior` (None: the standard normal)."""
    if config.prior == "standard_normal":
        return None
    return density.FlowPrior(config.latent_size, flow=config.prior,
                             num_flows=config.prior_num_flows,
                             hidden_units=tuple(config.prior_hidden_units), seed=config.seed,
                             name="prior")


Parts = collections.namedtuple("Parts", ["encoder", "decoder", "latent", "likelihood"])
"""The reference VAE's parts, which the variants' entries assemble into their models."""


ELBO_FIELDS = ("analytic_kl", "beta", "kl_warmup_steps", "free_bits", "free_bits_groups")


def elbo_objective(config, **fixed):
    """The `ELBO` objective of the ELBO options (`ELBO_FIELDS`) an entry's config has.

    Options the config lacks keep `ELBO`'s defaults, or take `fixed`; every
    entry that trains on the ELBO builds its objective here.
    """
    names = {field.name for field in dataclasses.fields(config)}
    options = {name: getattr(config, name) for name in ELBO_FIELDS if name in names}
    return ELBO(**{**options, **fixed})


def build_parts(config, info):
    """The encoder, decoder, latent layer and likelihood of `config` for `info.image_shape`."""
    image_shape = tuple(info.image_shape)
    if config.likelihood == "gaussian":
        likelihood, per_pixel = families.Gaussian(image_shape), 2
    else:
        likelihood, per_pixel = families.Bernoulli(image_shape), 1
    posterior = (families.FullCovarianceGaussian(config.latent_size)
                 if config.posterior == "fullcov"
                 else families.DiagonalGaussian(config.latent_size))
    encoder, decoder = build_networks(config, image_shape, likelihood.params_size, per_pixel)
    latent = latents.LatentLayer(posterior, prior=build_prior(config), flow=build_flow(config),
                                 name="latent")
    return Parts(encoder, decoder, latent, likelihood)


def build_model(config, info):
    """The VAE for `config` on images of `info.image_shape`."""
    return VAE(*build_parts(config, info), objective=elbo_objective(config), seed=config.seed,
               name="vae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
