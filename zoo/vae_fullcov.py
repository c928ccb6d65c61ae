"""`vae_fullcov`: the VAE with the full-covariance posterior of Algorithm 2 (§2.5.1).

L = L_mask * L' + diag(sigma), z = mu + L eps; everything else as `vae`.

    python -m zoo.vae_fullcov --workdir=/tmp/vae_fullcov --dataset=fashion_mnist
"""

from zoo import common
from zoo import vae

Config = common.preset(vae.Config, "vae_fullcov", posterior="fullcov")
build_model = vae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
