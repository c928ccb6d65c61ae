"""M1 features for M2: the M1+M2 stack of Kingma et al. 2014 (book §4.5.1).

M1 is a VAE trained without labels on all images (any `zoo.vae` workdir);
M2 (`tfvae.models.m2`) is then trained on M1's latent representation
instead of the pixels. As in Kingma et al., training batches carry a fresh
draw z_1 ~ q(z_1|x) each time a batch is made (the features are noisy
copies of the data, an augmentation), held-out batches the posterior's
summary point (its mean for a Gaussian posterior), so test accuracy is
deterministic.

The features of a batch are shaped [batch, 1, 1, d]: M2 sees a 1 x 1
"image" with d channels and models it with a Gaussian likelihood, so every
image-shaped code path of the models (shape checks, tiling) is unchanged.

    m1 = load_m1("/tmp/m1")
    features = to_features(dataset, m1, sample=True, seed=0)
"""

import dataclasses
import os

import tensorflow as tf

from tfvae import streams
from tfvae.models import cvae
from tfvae.models import vae as vae_lib
from zoo import workdirs


def load_m1(workdir):
    """The trained M1 of a zoo workdir (its `model.keras`), frozen.

    Args:
      workdir: folder of a finished `zoo.vae` (or other `VAE` entry) run.

    Returns:
      The `tfvae.models.vae.VAE`, with `trainable = False`.

    Raises:
      ValueError: there is no model.keras in `workdir`, or it is not a VAE
        with one latent vector per image.
    """
    path = os.path.join(workdir, "model.keras")
    if not os.path.exists(path):
        raise ValueError(f"No trained M1 in the workdir (model.keras is missing); train one first, "
                         f"e.g. `python -m zoo.vae --workdir={workdir}`. "
                         f"Received: m1_workdir={workdir!r}")
    model = workdirs.load_model(path, "m1_workdir")
    if not isinstance(model, vae_lib.VAE) or isinstance(model, cvae.ConditionalVAE):
        raise ValueError(f"M1 must be an unconditional VAE; {path} holds a "
                         f"{type(model).__name__}. Received: m1_workdir={workdir!r}")
    model.trainable = False
    return model


def feature_info(info, m1):
    """The `tfvae.data.datasets.DatasetInfo` of M1's features of the dataset `info` describes.

    Same name, labels and split sizes; image_shape (1, 1, latent_size) and
    num_bits 0 (continuous values).
    """
    return dataclasses.replace(info, image_shape=(1, 1, m1.latent.latent_size), num_bits=0)


def features(m1, images, sample, seed):
    """M1's representation of `images` [batch, H, W, C]: [batch, 1, 1, latent_size].

    Args:
      m1: the trained M1 (`load_m1`).
      images: a batch of images as M1 was trained on them.
      sample: draw z_1 ~ q(z_1|x) (training data) instead of the summary point.
      seed: stateless seed [2] of the draw.
    """
    if sample:
        z = m1.encode(images).sample(seed=seed)
    else:
        z = m1.posterior_summary(images)["loc"]
    return tf.reshape(z, [-1, 1, 1, m1.latent.latent_size])


def to_features(dataset, m1, sample, seed=0, stream="m1_features", epoch=None):
    """Maps every batch {"image", ...} of `dataset` to M1's features (other keys kept).

    Args:
      dataset: a `tf.data.Dataset` of batches {"image": [B, H, W, C], ...}.
      m1: the trained M1.
      sample: draw z_1 ~ q(z_1|x) per batch (a different draw for every batch
        and every epoch) instead of the posterior's summary point.
      seed: the user seed of the draws.
      stream: the `tfvae.streams` purpose of the draws ("m1_features", or
        "m1_labelled_features" for the labelled stream of M1+M2): never the
        stream that binarized the same batches.
      epoch: None, or the epoch whose draws these are (`tfvae.streams`).

    Returns:
      The dataset with "image" replaced by features [B, 1, 1, latent_size].
    """
    # Other draws in every epoch: the features are re-sampled like dynamic binarization.
    draw_seeds = streams.seed_pairs(seed, stream, epoch)

    def convert(batch, draw_seed):
        draw_seed = tf.cast(draw_seed % (2 ** 31 - 1), tf.int32)
        return {**batch, "image": features(m1, batch["image"], sample, draw_seed)}

    return tf.data.Dataset.zip(dataset, draw_seeds).map(convert, tf.data.AUTOTUNE)
