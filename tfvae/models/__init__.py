"""Models: Keras 3 `Model` subclasses wiring networks, latents, flows and families."""

from tfvae.models.flow_density import FlowDensity
from tfvae.models.vae import VAE

__all__ = ["FlowDensity", "VAE"]
