"""Models: Keras 3 `Model` subclasses wiring networks, latents, flows and families.

Every model is a `LatentVariableModel` (`tfvae.models.base`): the base owns
the batch, seeds, metrics, the guarded train/test step and the IS skeleton;
a model class adds its math through the protocol documented there.
"""

from tfvae.models.base import Batch
from tfvae.models.base import LatentVariableModel
from tfvae.models.flow_density import FlowDensity
from tfvae.models.vae import VAE

__all__ = ["Batch", "FlowDensity", "LatentVariableModel", "VAE"]
