"""`cvae`: the conditional VAE p(x|z, y) q(z|x, y) (Sohn et al. 2015; book §1.3.1).

The reference MLP VAE of `vae` with the one-hot label concatenated to the
encoder's features and to z at the decoder's input; every `vae` option
(network, posterior, flow, beta, ...) applies. The export's `sample` takes
labels: class-conditional samples in a TensorFlow-only process.

    python -m zoo.cvae --workdir=/tmp/cvae --dataset=fashion_mnist
"""

import dataclasses

from tfvae.models import cvae
from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `cvae` entry's options: those of `vae` (the dataset must have labels)."""

    dataset: str = "fashion_mnist"


def build_model(config, info):
    """The conditional VAE for `config` on a labelled dataset described by `info`.

    The parts are the reference VAE's (`vae.build_parts`); the decoder's input
    grows by the one-hot label when it is built.
    """
    if info.num_classes < 2:
        raise ValueError(f"`cvae` needs a labelled dataset. Received: dataset={info.name!r} "
                         f"(num_classes={info.num_classes})")
    return cvae.ConditionalVAE(*vae.build_parts(config, info), num_classes=info.num_classes,
                               objective=config.objective(), seed=config.seed, name="cvae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
