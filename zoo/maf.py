"""`maf`: a masked autoregressive flow as a stand-alone density model (book §4.4).

MAF (Papamakarios et al. 2017) with our Keras 3 MADE, fitted by maximum
likelihood to a 2-D toy density (default `two_moons`; also `eight_gaussians`,
`pinwheel`) or to uniformly dequantized 8-bit images (`--dataset=fashion_mnist`,
reported in bits/dim). `--flow=realnvp` gives RealNVP coupling (see `realnvp`).

    python -m zoo.maf --workdir=/tmp/maf
    python -m zoo.maf --workdir=/tmp/maf_fmnist --dataset=fashion_mnist --hidden_units=1024,1024
"""

import dataclasses

import numpy as np

from tfvae.training import train
from tfvae.flows import density
from tfvae.models import FlowDensity
from tfvae import validation

FLOWS = ("maf", "realnvp")


@dataclasses.dataclass
class Config(train.TrainConfig):
    """The `maf` entry's options.

    Attributes:
      flow: "maf" or "realnvp".
      num_flows: number of flow steps.
      hidden_units: hidden widths of each step's MADE / coupling network.
      logit_alpha: images are modelled as logit(alpha + (1 - 2 alpha) y); 0 disables.
    """

    dataset: str = "two_moons"
    binarize: str = "none"
    batch_size: int = 256
    epochs: int = 20
    flow: str = "maf"
    num_flows: int = 5
    hidden_units: tuple = (64, 64)
    logit_alpha: float = 0.05

    def validate(self):
        super().validate()
        validation.one_of("flow", self.flow, FLOWS)
        validation.at_least("num_flows", self.num_flows, 1)
        if self.binarize != "none":
            raise ValueError("A flow models dequantized grey values or continuous data: "
                             f"use --binarize=none. Received: binarize={self.binarize!r}")


def build_model(config, info):
    """The flow density model for `config` on examples of `info.image_shape`."""
    size = int(np.prod(info.image_shape))
    flow = density.FlowPrior(size, flow=config.flow, num_flows=config.num_flows,
                             hidden_units=tuple(config.hidden_units), seed=config.seed,
                             name="flow")
    return FlowDensity(info.image_shape, flow, num_bits=info.num_bits,
                       logit_alpha=config.logit_alpha, seed=config.seed, name=config.flow)


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
