"""`vae_fullcov`: the VAE with the full-covariance posterior of Algorithm 2 (§2.5.1).

L = L_mask * L' + diag(sigma), z = mu + L eps; everything else as `vae`.

    python -m zoo.vae_fullcov --workdir=/tmp/vae_fullcov --dataset=fashion_mnist
"""

import dataclasses

from zoo import vae


@dataclasses.dataclass
class Config(vae.Config):
    """The `vae_fullcov` entry's options: `vae`'s, with posterior="fullcov"."""

    posterior: str = "fullcov"


build_model = vae.build_model


if __name__ == "__main__":
    from zoo import common
    import sys
    common.main(sys.modules[__name__])
