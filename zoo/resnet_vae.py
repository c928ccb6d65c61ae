"""`resnet_vae`: ResNet VAE with bidirectional inference and IAF (Kingma et al. 2016).

A convolutional top-down stack (`tfvae.hierarchy.resnet.ResNetStack`): a
deterministic bottom-up pass, then a top-down pass shared by inference and
generation; each layer's posterior adds bottom-up and top-down Gaussian
parameters and is refined by an IAF (1x1 autoregressive convolutions over
the latent channels) conditioned on the summed bottom-up and top-down
contexts (`--inference=ladder` merges them by precision instead;
`--inference=bottom_up` is q(z_1|x) q(z_2|z_1) ...; both without IAF). The
layers sit at one latent resolution, or at several with
`--layers_per_resolution` (the paper's 16x16 then 8x8 blocks: `10,10`).
Weight normalization with data-dependent init, ELU, free bits per
layer, Adamax, Polyak (EMA) averaged weights for evaluation and export, and
a discretized logistic mixture p(x|z) (`--likelihood=logistic` for the
paper's single discretized logistic); results in bits/dim.

Presets (`--preset` picks the defaults; any other flag still overrides them):
  - `paper` (default): CIFAR-10 sizes after Kingma et al. 2016 / openai/iaf:
    16x16 and 8x8 latents (stride-2 stem), 20 stochastic layers, 160 hidden and 32
    latent channels, 1 IAF step, free bits 0.1 nats per layer, Adamax 2e-3,
    batch 32, EMA 0.999, 5-component mixture. Needs the CIFAR-10 files
    (`--data_dir`, or the download) and a GPU/TPU: one CPU epoch takes hours.
    Two resolutions as in the paper: 10 layers of 16x16 latents, then 10
    of 8x8 (`--layers_per_resolution=10,10`; empty for one resolution).
    Deviation: a mixture likelihood by default.
  - `small`: trains in minutes on a 2-core CPU on the offline
    `image_patches` data (32x32x3 patches of scikit-learn's photographs):
    2 layers, 16 hidden and 8 latent channels, EMA 0.99, 5 epochs (700
    steps of batch 32), XLA off (slower than the graph executor for this
    model on a CPU).

    python -m zoo.resnet_vae --preset=small --workdir=/tmp/resnet_vae_small
    python -m zoo.resnet_vae --workdir=/tmp/resnet_vae --data_dir=/data/cifar10
"""

import dataclasses

from tfvae.distributions import discretized
from tfvae.training import train
from tfvae.hierarchy import base
from tfvae.hierarchy import resnet
from tfvae.models import hvae
from tfvae import validation
from zoo import common
from zoo import vae

LIKELIHOODS = ("logistic_mixture", "logistic")


@dataclasses.dataclass
class Config(train.TrainConfig):
    """The `resnet_vae` entry's options (defaults: the `paper` preset).

    Attributes:
      preset: "paper" or "small": which defaults the other fields start from.
      num_layers: stochastic layers L.
      layers_per_resolution: layers per latent resolution, finest first
        (e.g. 10,10: 16x16 then 8x8 latents on CIFAR-10); they must sum to
        num_layers. Empty: one resolution with num_layers layers.
      hidden_channels: channels of the deterministic ResNet features.
      latent_channels: channels of each latent map.
      inference: "bidirectional" (Kingma 2016), "ladder" (precision-weighted merge) or
        "bottom_up" (q(z_1|x) q(z_2|z_1) ...; single-sample KLs).
      downsample: stride of the stem (latents at H/downsample x W/downsample).
      activation: activation of the ResNet blocks ("elu", "swish", ...).
      weight_norm: weight normalization with data-dependent init.
      iaf_steps: IAF steps per layer (needs inference=bidirectional); 0: none.
      iaf_hidden_units: hidden widths of each IAF step's per-pixel MADE.
      context_channels: IAF context channels per pixel.
      likelihood: "logistic_mixture" (Salimans 2017) or "logistic" (one per channel).
      num_components: mixture components per pixel channel.
      free_bits: free bits lambda in nats per layer (§2.8.1); 0 disables.
      kl_warmup_steps: linear KL warm-up over this many steps; 0 disables.
      max_grad_norm: skip steps whose gradient norm exceeds this (counted in skipped_steps); 0 disables.
    """

    dataset: str = "cifar10"
    binarize: str = "none"
    batch_size: int = 32
    learning_rate: float = 2e-3
    optimizer: str = "adamax"
    ema_decay: float = 0.999
    preset: str = "paper"
    num_layers: int = 20
    layers_per_resolution: tuple = (10, 10)
    hidden_channels: int = 160
    latent_channels: int = 32
    inference: str = "bidirectional"
    downsample: int = 2
    activation: str = "elu"
    weight_norm: bool = True
    iaf_steps: int = 1
    iaf_hidden_units: tuple = (160,)
    context_channels: int = 32
    likelihood: str = "logistic_mixture"
    num_components: int = 5
    free_bits: float = 0.1
    kl_warmup_steps: int = 0
    max_grad_norm: float = 0.0

    def added_fields(self):
        return {**super().added_fields(), "layers_per_resolution": []}

    def validate(self):
        super().validate()
        validation.one_of("preset", self.preset, PRESETS)
        validation.one_of("likelihood", self.likelihood, LIKELIHOODS)
        validation.one_of("inference", self.inference, base.INFERENCE)
        for name in ("num_layers", "hidden_channels", "latent_channels", "context_channels",
                     "num_components", "downsample"):
            validation.at_least(name, getattr(self, name), 1)
        validation.at_least("iaf_steps", self.iaf_steps, 0)
        if self.iaf_steps and self.inference != "bidirectional":
            raise ValueError("The IAF context comes from the bidirectional pass: use "
                             f"--iaf_steps=0 with inference={self.inference!r}. "
                             f"Received: iaf_steps={self.iaf_steps!r}")
        layers = self.layers_per_resolution
        if layers and (any(not isinstance(n, int) or n < 1 for n in layers)
                       or sum(layers) != self.num_layers):
            raise ValueError(f"`layers_per_resolution` must be empty (one resolution) or "
                             f"positive integers summing to num_layers ({self.num_layers}). "
                             f"Received: layers_per_resolution={layers!r}")
        if self.binarize != "none":
            raise ValueError("A discretized logistic models 8-bit values: use --binarize=none. "
                             f"Received: binarize={self.binarize!r}")


# XLA is off in `small`: on a CPU the per-pixel IAF and the small convs run ~5x slower
# compiled than in TensorFlow's graph executor (measured: 2.4 s vs 0.44 s per step).
SmallConfig = common.preset(
    Config, "resnet_vae_small", module=__name__, preset="small", dataset="image_patches", epochs=5, num_layers=2,
    layers_per_resolution=(), hidden_channels=16, latent_channels=8, iaf_hidden_units=(16,),
    context_channels=8, ema_decay=0.99, jit_compile=False)
PRESETS = {"paper": Config, "small": SmallConfig}
"""`--preset` -> the Config class whose defaults the other flags override (`zoo.common`)."""


def build_model(config, info):
    """The ResNet VAE for `config` on 8-bit images of `info.image_shape`."""
    image_shape = tuple(info.image_shape)
    if config.likelihood == "logistic":
        likelihood = discretized.DiscretizedLogistic(image_shape, num_bins=2 ** info.num_bits)
    else:
        likelihood = discretized.DiscretizedLogisticMixture(
            image_shape, num_components=config.num_components, num_bins=2 ** info.num_bits)
    per_pixel = likelihood.params_size // (image_shape[0] * image_shape[1])
    stack = resnet.ResNetStack(
        image_shape, per_pixel, num_layers=config.num_layers,
        hidden_channels=config.hidden_channels, latent_channels=config.latent_channels,
        inference=config.inference, downsample=config.downsample, activation=config.activation,
        weight_norm=config.weight_norm, iaf_steps=config.iaf_steps,
        iaf_hidden_units=config.iaf_hidden_units, context_channels=config.context_channels,
        seed=config.seed, layers_per_resolution=config.layers_per_resolution or None,
        name="stack")
    return hvae.HierarchicalVAE(
        stack, likelihood, objective=vae.elbo_objective(config),
        max_grad_norm=config.max_grad_norm, seed=config.seed, name="resnet_vae")


if __name__ == "__main__":
    common.main_for(__name__)
