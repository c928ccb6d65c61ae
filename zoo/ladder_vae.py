"""`ladder_vae`: the Ladder VAE of Sønderby et al. 2016 on MNIST-like data (book §4.2).

Five Gaussian layers with latents 64-32-16-8-4 and deterministic MLPs of
widths 512-256-128-64-32 (two layers each), as in the paper's MNIST model;
inference merges the bottom-up and top-down Gaussians by precision
weighting (`tfvae.hierarchy.base.precision_weighted_merge`). Scaled down
for CPU: weight normalization with data-dependent init instead of batch
normalization, ELU instead of leaky ReLU, and a KL warm-up of 2000 steps
(about 5 epochs at batch 128) instead of 200 epochs.

Stability: Adam 1e-3 (the paper's 2e-3 trained to a better 10-epoch
validation ELBO in one run, -237.96, but diverged at epoch 8 in another:
-239.92 -> -404.7) and steps with a global gradient norm above 400 are
skipped and counted (`max_grad_norm`; measured norms: median 27-37, 99th
percentile 39-75, max 574 in the first 300 steps only).

    python -m zoo.ladder_vae --workdir=/tmp/ladder_vae --dataset=fashion_mnist
"""

from zoo import common
from zoo import hvae

Config = common.preset(hvae.Config, "ladder_vae", inference="ladder",
                       latent_sizes=(64, 32, 16, 8, 4), hidden_units=(512, 256, 128, 64, 32),
                       weight_norm=True, kl_warmup_steps=2000, learning_rate=1e-3,
                       max_grad_norm=400.0)
build_model = hvae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
