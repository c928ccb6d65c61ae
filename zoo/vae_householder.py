"""`vae_householder`: the reference VAE with a Householder-flow posterior.

8 amortized volume-preserving reflections (Tomczak & Welling 2016) after the
diagonal Gaussian; Monte-Carlo KL.

    python -m zoo.vae_householder --workdir=/tmp/vae_householder --dataset=fashion_mnist
"""

from zoo import common
from zoo import vae

Config = common.preset(vae.Config, "vae_householder", analytic_kl=False, flow="householder", num_flows=8)
build_model = vae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
