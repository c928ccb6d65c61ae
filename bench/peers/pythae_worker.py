"""The pythae side of the peer benchmark; runs in .venv-peers (PyTorch), never in tfvae's venv.

    .venv-peers/bin/python bench/peers/pythae_worker.py --threads=2 --batch_size=128 --steps=400

Builds pythae's `VAE` (or `IWAE` with k samples, or `VAE_IAF` with MADE
blocks) with the reference architecture of tfvae's `vae` entry (MLP
784-512-512 -> 32 -> 512-512-784, ReLU, Bernoulli/BCE likelihood, Adam 1e-3)
on the first `steps * batch_size` Fashion-MNIST training images
(binarized once), then serves timing requests on stdin: each line "epoch"
runs `steps` training steps (pythae's own `forward`, which computes the loss,
then backward and an Adam step) and answers one JSON line with the seconds.
The timed loop is a bare PyTorch loop over pre-built batch tensors — the
fastest way to drive pythae's model (its `BaseTrainer` adds data loaders,
logging and callbacks), so the comparison favours the peer.
"""

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
from pythae.data.datasets import DatasetOutput
from pythae.models import IWAE, IWAEConfig, VAE, VAE_IAF, VAE_IAF_Config, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder

IMAGES = "train-images-idx3-ubyte"
PLACES = ("/usr/share/datasets/fashion-mnist",
          os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                       "datasets", "fashion-mnist"))


def load_images(data_dir=None):
    """Fashion-MNIST training images as uint8 [60000, 28, 28] from the IDX file."""
    for place in ([data_dir] if data_dir else []) + list(PLACES):
        for name, opener in ((IMAGES + ".gz", gzip.open), (IMAGES, open)):
            path = os.path.join(place, name)
            if os.path.exists(path):
                with opener(path, "rb") as f:
                    raw = f.read()
                return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    raise FileNotFoundError(f"No {IMAGES}[.gz] in {[data_dir] if data_dir else list(PLACES)}")


class Encoder(BaseEncoder):
    def __init__(self, latent_size):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 512),
                                       torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU())
        self.head = torch.nn.Linear(512, 2 * latent_size)

    def forward(self, x):
        mu, log_var = self.head(self.net(x)).chunk(2, dim=-1)
        return ModelOutput(embedding=mu, log_covariance=log_var)


class Decoder(BaseDecoder):
    def __init__(self, latent_size):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(latent_size, 512), torch.nn.ReLU(),
                                       torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                       torch.nn.Linear(512, 784), torch.nn.Sigmoid())

    def forward(self, z):
        return ModelOutput(reconstruction=self.net(z).reshape(-1, 1, 28, 28))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--latent_size", type=int, default=32)
    parser.add_argument("--model", choices=("vae", "iwae", "vae_iaf"), default="vae")
    parser.add_argument("--k", type=int, default=5, help="IWAE samples.")
    parser.add_argument("--num_flows", type=int, default=4, help="VAE_IAF MADE blocks.")
    parser.add_argument("--flow_hidden", type=int, default=256, help="MADE hidden width.")
    parser.add_argument("--flow_layers", type=int, default=2, help="MADE hidden layers.")
    parser.add_argument("--data_dir", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = load_images(args.data_dir or None)[:args.steps * args.batch_size] / 255.0
    binary = (rng.uniform(size=images.shape) < images).astype(np.float32)
    batches = [torch.from_numpy(b[:, None]) for b in
               np.split(binary, args.steps)]                          # [batch, 1, 28, 28] each
    common = dict(input_dim=(1, 28, 28), latent_dim=args.latent_size, reconstruction_loss="bce")
    if args.model == "iwae":
        model_class, config = IWAE, IWAEConfig(number_samples=args.k, **common)
    elif args.model == "vae_iaf":
        model_class, config = VAE_IAF, VAE_IAF_Config(
            n_made_blocks=args.num_flows, n_hidden_in_made=args.flow_layers,
            hidden_size=args.flow_hidden, **common)
    else:
        model_class, config = VAE, VAEConfig(**common)
    model = model_class(config, encoder=Encoder(args.latent_size),
                        decoder=Decoder(args.latent_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def epoch():
        start = time.perf_counter()
        for x in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = model(DatasetOutput(data=x)).loss
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start, float(loss.detach())

    epoch()                                                          # warm-up
    sys.stdout.write(json.dumps({"ready": True, "torch": torch.__version__, "model": model_class.__name__,
                                 "threads": torch.get_num_threads()}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip() != "epoch":
            break
        seconds, loss = epoch()
        sys.stdout.write(json.dumps({"seconds": seconds, "loss": loss}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
