"""`vae_iaf`: the reference VAE with an IAF posterior (book §3.3-3.4, Algorithm 3).

T = 2 steps of MADEs with the encoder's context h, the gated update
z = sigma * z + (1 - sigma) * m, orderings reversed between steps;
Monte-Carlo KL; everything else as `vae`.

    python -m zoo.vae_iaf --workdir=/tmp/vae_iaf --dataset=fashion_mnist
"""

from zoo import common
from zoo import vae

Config = common.preset(vae.Config, "vae_iaf", analytic_kl=False, flow="iaf", num_flows=2)
build_model = vae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
