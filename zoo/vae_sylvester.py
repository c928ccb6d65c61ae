"""`vae_sylvester`: the reference VAE with a Sylvester-flow posterior.

8 amortized steps z + Q R h(R~ Q^T z + b) (van den Berg et al. 2018),
`--sylvester_variant=orthogonal|householder|triangular`; Monte-Carlo KL.

    python -m zoo.vae_sylvester --workdir=/tmp/vae_sylvester --dataset=fashion_mnist
"""

from zoo import common
from zoo import vae

Config = common.preset(vae.Config, "vae_sylvester", analytic_kl=False, flow="sylvester", num_flows=8)
build_model = vae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
