"""`pixel_vae`: a VAE with a gated PixelCNN decoder (book §4.3; PixelVAE, VLAE).

MLP encoder to a 32-dimensional diagonal Gaussian q(z|x); a transposed-conv
decoder maps z to a 28x28 context map that conditions a small gated
PixelCNN (one stack of gated residual blocks with masked convolutions, see
`tfvae.nn.pixelcnn`) over the binarized image. Free bits (1 nat per group of 4
latents, §2.8.1) keep the latents in use. Sampling is autoregressive
(28 * 28 PixelCNN passes) and runs in graph, also in the exported
SavedModel's `sample`.

    python -m zoo.pixel_vae --workdir=/tmp/pixel_vae --dataset=fashion_mnist
"""

import dataclasses

from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.nn import pixelcnn
from tfvae.training import train
from tfvae.models import pixel_vae
from tfvae import validation
from zoo import vae


@dataclasses.dataclass
class Config(train.TrainConfig):
    """The `pixel_vae` entry's options.

    Attributes:
      latent_size: dimension of z.
      hidden_units: widths of the MLP encoder's layers.
      activation: activation of the encoder and the context decoder.
      decoder_filters: channels of the context decoder's transposed convolutions.
      context_channels: channels C_ctx of the context map fed to the PixelCNN.
      pixelcnn_filters: channels of the PixelCNN's residual stream.
      pixelcnn_layers: gated residual blocks of the PixelCNN.
      kernel_size: kernel of the blocks' masked convolutions.
      first_kernel_size: kernel of the first (type A) masked convolution.
      free_bits: lambda in nats per latent group (§2.8.1); 0 disables.
      free_bits_groups: number of latent groups for free bits.
    """

    latent_size: int = 32
    hidden_units: tuple = (512, 512)
    activation: str = "relu"
    decoder_filters: tuple = (32, 16)
    context_channels: int = 16
    pixelcnn_filters: int = 16
    pixelcnn_layers: int = 3
    kernel_size: int = 3
    first_kernel_size: int = 7
    free_bits: float = 1.0
    free_bits_groups: int = 8

    def validate(self):
        super().validate()
        if self.binarize == "none":
            raise ValueError("pixel_vae models binary images: use --binarize=dynamic or static. "
                             "Received: binarize='none'")
        for name in ("latent_size", "context_channels", "pixelcnn_filters", "pixelcnn_layers",
                     "free_bits_groups"):
            validation.at_least(name, getattr(self, name), 1)
        validation.divides("free_bits_groups", self.free_bits_groups, (self.latent_size,))
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"`hidden_units` must be positive integers. "
                             f"Received: hidden_units={self.hidden_units!r}")


def build_model(config, info):
    """The PixelVAE for `config` on single-channel images of `info.image_shape`."""
    image_shape = tuple(info.image_shape)
    hidden = tuple(config.hidden_units)
    encoder = networks.MLP(hidden[:-1], hidden[-1], activation=config.activation,
                           output_activation=config.activation, name="encoder")
    decoder = networks.ConvDecoder(image_shape, tuple(config.decoder_filters),
                                   config.context_channels, activation=config.activation,
                                   name="decoder")
    latent = latents.LatentLayer(families.DiagonalGaussian(config.latent_size), name="latent")
    net = pixelcnn.PixelCNN(config.pixelcnn_filters, config.pixelcnn_layers,
                            kernel_size=config.kernel_size,
                            first_kernel_size=config.first_kernel_size, name="pixelcnn")
    return pixel_vae.PixelVAE(encoder, decoder, latent, families.Bernoulli(image_shape),
                              pixelcnn=net, objective=vae.elbo_objective(config),
                              seed=config.seed, name="pixel_vae")


if __name__ == "__main__":
    from zoo import common
    common.main_for(__name__)
