"""`vae_flow_prior`: the reference VAE with a learned flow prior p(z) (§4.4).

A MAF prior (`--prior=realnvp` for RealNVP coupling), 4 steps; Monte-Carlo
KL; everything else as `vae`.

    python -m zoo.vae_flow_prior --workdir=/tmp/vae_flow_prior --dataset=fashion_mnist
"""

from zoo import common
from zoo import vae

Config = common.preset(vae.Config, "vae_flow_prior", analytic_kl=False, prior="maf")
build_model = vae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
