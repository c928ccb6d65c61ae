"""`ladder_vae`: the Ladder VAE of Sønderby et al. 2016 on MNIST-like data (book §4.2).

Five Gaussian layers with latents 64-32-16-8-4 and deterministic MLPs of
widths 512-256-128-64-32 (two layers each), as in the paper's MNIST model;
inference merges the bottom-up and top-down Gaussians by precision
weighting (`tfvae.hierarchy.base.precision_weighted_merge`). Scaled down
for CPU: weight normalization with data-dependent init instead of batch
normalization, ELU instead of leaky ReLU, and a KL warm-up of 2000 steps
(about 5 epochs at batch 128) instead of 200 epochs; Adam 2e-3 as in the paper.

    python -m zoo.ladder_vae --workdir=/tmp/ladder_vae --dataset=fashion_mnist
"""

from zoo import common
from zoo import hvae

Config = common.preset(hvae.Config, "ladder_vae", inference="ladder",
                       latent_sizes=(64, 32, 16, 8, 4), hidden_units=(512, 256, 128, 64, 32),
                       weight_norm=True, kl_warmup_steps=2000, learning_rate=2e-3)
build_model = hvae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
