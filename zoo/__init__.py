"""The model zoo: one module per entry, each runnable as `python -m zoo.<entry>`.

An entry module defines `Config` (a `tfvae.training.train.TrainConfig` dataclass with
the entry's hyper-parameters and defaults) and `build_model(config, info)`.
"""

import importlib

ENTRIES = ("vae", "vae_fullcov", "vae_iaf", "vae_planar", "vae_householder", "vae_sylvester",
           "vae_flow_prior", "maf", "realnvp",
           "iwae", "miwae", "beta_vae", "beta_tcvae", "vamp_vae",
           "hvae", "ladder_vae", "resnet_vae",
           "cvae", "gumbel_vae", "m2", "pixel_vae")


def load(name):
    """Returns the entry module `zoo.<name>`; ValueError for an unknown entry."""
    if name not in ENTRIES:
        raise ValueError(f"Unknown zoo entry {name!r}. Known entries: {', '.join(ENTRIES)}")
    return importlib.import_module(f"zoo.{name}")
