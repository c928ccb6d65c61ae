"""`vae_planar`: the reference VAE with a planar-flow posterior (§3.2.2).

16 amortized steps f(z) = z + u tanh(w^T z + b) with the invertibility
constraint on u (Rezende & Mohamed 2015); Monte-Carlo KL.

    python -m zoo.vae_planar --workdir=/tmp/vae_planar --dataset=fashion_mnist
"""

from zoo import common
from zoo import vae

Config = common.preset(vae.Config, "vae_planar", analytic_kl=False, flow="planar", num_flows=16)
build_model = vae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
