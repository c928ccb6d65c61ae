"""The model zoo: one module per entry, each runnable as `python -m zoo.<entry>`.

An entry module defines `Config` (a `tfvae.training.train.TrainConfig` dataclass with
the entry's hyper-parameters and defaults) and `build_model(config, info)`.
"""

import importlib

ENTRIES = ("vae", "vae_fullcov", "vae_iaf", "vae_planar", "vae_householder", "vae_sylvester",
           "vae_flow_prior", "maf", "realnvp",
           "iwae", "miwae", "beta_vae", "beta_tcvae", "vamp_vae",
           "cvae", "m2", "gumbel_vae", "pixel_vae",
           "hvae", "ladder_vae", "resnet_vae")
"""The registry: every entry, in the order of `python -m zoo --list`, the README's entry
table and BUILD's `py_binary` targets (`tests/test_registry.py` checks that they agree)."""

TOOLS = ("evaluate", "gradients")
"""Commands that work on any entry's workdir (`python -m zoo.evaluate`, `zoo.gradients`)."""


def load(name):
    """Returns the entry module `zoo.<name>`; ValueError for an unknown entry."""
    if name not in ENTRIES:
        raise ValueError(f"Unknown zoo entry {name!r}. Known entries: {', '.join(ENTRIES)}")
    return importlib.import_module(f"zoo.{name}")
