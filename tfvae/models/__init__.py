"""Models: Keras 3 `Model` subclasses wiring networks, latents and families."""

from tfvae.models.vae import VAE

__all__ = ["VAE"]
