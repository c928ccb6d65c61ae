"""A VAE with a gated PixelCNN decoder (book §4.2-4.3; PixelVAE, VLAE).

p(x|z) = prod_i Bernoulli(x_i | x_<i, z): the decoder network maps z to a
feature map c [H, W, C_ctx] (e.g. `ConvDecoder`), and a `PixelCNN` reads
the image through masked convolutions with c added to its gates
(Gulrajani et al. 2017; Chen et al. 2017). An autoregressive decoder can
model x without z, so the latents may go unused; the zoo entry keeps them in
use with free bits (§2.8.1), an option of its `ELBO` objective.

Only `decode` differs from `VAE`: it returns the `AutoregressiveBernoulli`
whose `log_prob` is teacher-forced (one parallel pass) — so the ELBO,
training step and IS log-likelihood are `VAE`'s — and whose `sample` and
greedy `mean` run pixel by pixel in graph. `sample` returns binary samples
of p(x|z), z ~ p(z) (the decoder mean is not tractable).
"""

import keras
import tensorflow as tf

from tfvae.distributions import families
from tfvae.nn import pixelcnn as pixelcnn_lib
from tfvae.models import base
from tfvae.models import vae

_PACKAGE = "tfvae"


@keras.saving.register_keras_serializable(_PACKAGE)
class PixelVAE(vae.VAE):
    """VAE whose p(x|z) is a PixelCNN conditioned on a feature map of z.

    Args:
      encoder, latent: as for `VAE`.
      decoder: layer mapping z [n, latent_size] to a context map [n, H, W, C_ctx].
      likelihood: `Bernoulli` with event shape (H, W, 1) (the PixelCNN's
        pixel distribution; binarized images).
      pixelcnn: `PixelCNN` with one output channel.
      **kwargs: other `VAE` arguments (objective, seed, ...).
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, pixelcnn, **kwargs):
        super().__init__(encoder, decoder, latent, likelihood, **kwargs)
        if not isinstance(self.likelihood, families.Bernoulli) or self.image_shape[-1] != 1:
            raise ValueError("PixelVAE models binary single-channel images: `likelihood` must "
                             f"be Bernoulli with event shape (H, W, 1). Received: {likelihood!r}")
        self.pixelcnn = base.deserialize(pixelcnn)
        if not isinstance(self.pixelcnn, pixelcnn_lib.PixelCNN) or self.pixelcnn.output_channels != 1:
            raise ValueError("`pixelcnn` must be a PixelCNN with output_channels=1. "
                             f"Received: pixelcnn={pixelcnn!r}")

    def build(self, input_shape):
        super().build(input_shape)
        if not self.pixelcnn.built:
            context = self.decoder.compute_output_shape((None, self.latent.latent_size))
            self.pixelcnn.build([(None, *self.image_shape), tuple(context)])

    def decode(self, z, context=None):
        """p(x|z) for z [..., latent_size]: `AutoregressiveBernoulli`, batch [...], event (H, W, 1)."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        context = self.decoder(tf.reshape(z, [-1, self.latent.latent_size]))  # [n, H, W, C_ctx]
        context = tf.reshape(context, tf.concat([tf.shape(z)[:-1], tf.shape(context)[1:]], 0))
        return pixelcnn_lib.make_autoregressive_bernoulli(self.pixelcnn, context,
                                                          self.image_shape)

    def sample(self, num_samples, seed=None):
        """Binary samples x ~ p(x|z), z ~ p(z): [num_samples, H, W, 1] (H * W PixelCNN passes)."""
        num_samples = self.check_count("num_samples", num_samples, 0)
        seed = self.eval_seed(seed)
        z_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z = self.prior().sample(num_samples, seed=z_seed)
        return self.decode(z).sample(seed=x_seed)

    def get_config(self):
        return {**super().get_config(),
                "pixelcnn": keras.saving.serialize_keras_object(self.pixelcnn)}
