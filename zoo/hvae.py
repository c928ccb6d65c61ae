"""`hvae`: a two-layer fully connected hierarchical VAE (book §4.1-4.2).

p(z_2) p(z_1|z_2) p(x|z_1) with Gaussian layers and a Bernoulli p(x|z_1);
inference `--inference=bottom_up` (default: q(z_1|x) q(z_2|z_1), as Burda
et al. 2016's two-layer VAE), `ladder` (Sønderby et al. 2016) or
`bidirectional` (Kingma et al. 2016; `--iaf_steps=N` adds an IAF per layer)
of the same stack. Defaults: latents 32-16, deterministic MLPs of width
512 (below z_1) and 256 (below z_2), two layers each, ELU, Adam 1e-3.
Per-layer KLs are logged as `rate_0` (z_1) and `rate_1` (z_2).

Burda et al.'s 100-50 setting (x-200-200-z_1(100)-100-100-z_2(50), tanh):

    python -m zoo.hvae --workdir=/tmp/hvae_burda --latent_sizes=100,50 \
        --hidden_units=200,100 --activation=tanh

    python -m zoo.hvae --workdir=/tmp/hvae --dataset=fashion_mnist
"""

import dataclasses

from tfvae.distributions import families
from tfvae.training import train
from tfvae.hierarchy import base
from tfvae.hierarchy import mlp
from tfvae.models import hvae
from tfvae import validation
from zoo import vae


@dataclasses.dataclass
class Config(train.TrainConfig):
    """The `hvae` entry's options.

    Attributes:
      latent_sizes: sizes of z_1 (bottom) ... z_L (top).
      hidden_units: width of each layer's deterministic MLPs, one per latent layer.
      depth: dense layers per deterministic MLP.
      activation: hidden activation ("elu", "swish", "tanh", "relu", ...).
      inference: "bottom_up", "ladder" or "bidirectional" (book §4.2).
      weight_norm: weight normalization with data-dependent init.
      iaf_steps: IAF steps per layer (needs inference=bidirectional); 0: none.
      iaf_hidden_units: hidden widths of each IAF step's MADE.
      iaf_context_size: IAF context size per layer.
      analytic_kl: closed-form per-layer KLs where valid (ladder/bidirectional without IAF).
      beta: weight of the rate term.
      kl_warmup_steps: linear KL warm-up over this many steps (§2.8.1); 0 disables.
      free_bits: free bits lambda in nats per group (§2.8.1); 0 disables.
      free_bits_groups: free-bits groups within each layer (each layer is at least one group).
      max_grad_norm: skip steps whose gradient norm exceeds this (counted in skipped_steps); 0 disables.
    """

    latent_sizes: tuple = (32, 16)
    hidden_units: tuple = (512, 256)
    depth: int = 2
    activation: str = "elu"
    inference: str = "bottom_up"
    weight_norm: bool = False
    iaf_steps: int = 0
    iaf_hidden_units: tuple = (64,)
    iaf_context_size: int = 16
    analytic_kl: bool = True
    beta: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0
    free_bits_groups: int = 1
    max_grad_norm: float = 0.0

    def validate(self):
        super().validate()
        base.check_inference(self.inference)
        if len(self.hidden_units) != len(self.latent_sizes):
            raise ValueError(f"`hidden_units` needs one width per latent layer "
                             f"({len(self.latent_sizes)}). Received: hidden_units={self.hidden_units!r}")
        for name in ("depth", "iaf_context_size", "free_bits_groups"):
            validation.at_least(name, getattr(self, name), 1)
        validation.divides("free_bits_groups", self.free_bits_groups, self.latent_sizes,
                           "every latent layer's size")
        validation.at_least("kl_warmup_steps", self.kl_warmup_steps, 0)
        validation.at_least("iaf_steps", self.iaf_steps, 0)


def build_model(config, info):
    """The hierarchical VAE for `config` on images of `info.image_shape`."""
    image_shape = tuple(info.image_shape)
    likelihood = families.Bernoulli(image_shape)
    stack = mlp.MLPStack(image_shape, config.latent_sizes, config.hidden_units,
                         likelihood.params_size, inference=config.inference, depth=config.depth,
                         activation=config.activation, weight_norm=config.weight_norm,
                         iaf_steps=config.iaf_steps, iaf_hidden_units=config.iaf_hidden_units,
                         iaf_context_size=config.iaf_context_size, seed=config.seed, name="stack")
    return hvae.HierarchicalVAE(
        stack, likelihood, objective=vae.elbo_objective(config),
        max_grad_norm=config.max_grad_norm, seed=config.seed, name="hvae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
