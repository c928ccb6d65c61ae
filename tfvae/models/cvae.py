"""The conditional VAE p(x|z, y) q(z|x, y) (Sohn et al. 2015; book §1.3.1).

A label y (one of `num_classes`) conditions both networks: its one-hot code
is concatenated to the encoder's features h before the `LatentLayer`, and to
z before the decoder. The prior stays p(z) = N(0, I) (Sohn et al.'s simplest
variant), so the ELBO is that of the unconditional VAE with y as context:

    log p(x|y) >= E_q(z|x,y)[log p(x|z, y)] - KL(q(z|x, y) || p(z)).

`ConditionalVAE` overrides only what differs from `VAE`: how (x, y) are read
from a batch (y is the batch's `context`), `encode`/`decode` with y, and the
signatures that take labels; the ELBO, IS and training are the VAE's.
Class-conditional sampling is `sample(labels)`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae.models import base
from tfvae.models import serving
from tfvae.models import vae

_PACKAGE = "tfvae"


def check_num_classes(num_classes):
    """Returns `num_classes` as an int >= 2 or raises ValueError."""
    if (not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool)
            or num_classes < 2):
        raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
    return int(num_classes)


@keras.saving.register_keras_serializable(_PACKAGE)
class ConditionalVAE(vae.VAE):
    """VAE with a class label as an observed condition of q(z|x, y) and p(x|z, y).

    Batches are dicts {"image": [batch, H, W, C], "label": int [batch]} (or
    (image, label) tuples). Every method that reads x also takes `labels`
    int [batch]; for x with leading sample axes the labels broadcast.

    Args:
      encoder: layer mapping images [batch, H, W, C] to features [batch, F].
      decoder: layer mapping [n, latent_size + num_classes] (z and one-hot y)
        to likelihood parameters.
      latent: `LatentLayer` whose head reads [batch, F + num_classes].
      likelihood: likelihood family with event shape (H, W, C).
      num_classes: number of label classes K >= 2.
      **kwargs: the other `VAE` arguments (objective, seed, ...).
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, num_classes, **kwargs):
        self.num_classes = check_num_classes(num_classes)
        super().__init__(encoder, decoder, latent, likelihood, **kwargs)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.check_shape(input_shape)
        if not self.encoder.built:
            self.encoder.build(input_shape)
        features = self.encoder.compute_output_shape(input_shape)[-1]
        if not self.latent.built:
            self.latent.build((None, features + self.num_classes))
        if not self.decoder.built:
            self.decoder.build((None, self.latent.latent_size + self.num_classes))
        self.built = True

    # ------------------------------------------------------------------ inputs
    def one_hot(self, labels):
        """One-hot codes [..., num_classes] of int labels [...]."""
        return tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=self.compute_dtype)

    def check_labels(self, labels):
        """Raises if labels are outside [0, num_classes) (eagerly, or by graph asserts)."""
        if tf.executing_eagerly():
            values = labels.numpy()
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(f"`labels` must lie in [0, {self.num_classes}). "
                                 f"Received: min={values.min()}, max={values.max()}")
            return labels
        checks = [tf.debugging.assert_non_negative(labels, message="`labels` must be >= 0."),
                  tf.debugging.assert_less(labels, self.num_classes,
                                           message="`labels` must be < num_classes.")]
        with tf.control_dependencies(checks):
            return tf.identity(labels)

    def read_batch(self, data, check_values=False):
        """A labelled batch as `Batch(x [batch, H, W, C], context=labels int32 [batch])`."""
        if isinstance(data, base.Batch):
            return data
        if isinstance(data, dict):
            images, labels = data["image"], data.get("label")
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            images, labels = data
        else:
            raise ValueError("A conditional VAE needs labelled batches: a dict with 'image' and "
                             f"'label' or an (image, label) pair. Received: {type(data).__name__}")
        if labels is None:
            raise ValueError("A conditional VAE needs the batch's 'label'. Received: label=None")
        labels = tf.cast(labels, tf.int32)
        if check_values:
            labels = self.check_labels(labels)
        return base.Batch(self.read_examples(images, check_values), labels)

    # -------------------------------------------------------------- inference
    def encode(self, x, context=None):
        """Returns q(z|x, y) for x [batch, H, W, C], labels `context` [batch]: event [latent_size]."""
        return self.posterior_from_features(self.encoder(x), context)

    def posterior_params(self, x, context=None):
        """The amortized parameters of q(z|x, y) [batch, latent.params_size]."""
        return self.latent(tf.concat([self.encoder(x), self.one_hot(context)], axis=-1))

    def posterior_from_features(self, h, labels):
        """q(z|x, y) from encoder features h [batch, F] (computed once for all y)."""
        return self.latent.posterior(tf.concat([h, self.one_hot(labels)], axis=-1))

    def decode(self, z, context=None):
        """Returns p(x|z, y) for z [..., latent_size] and labels `context` broadcastable to [...]."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        batch = tf.shape(z)[:-1]
        y = tf.broadcast_to(self.one_hot(context), tf.concat([batch, [self.num_classes]], 0))
        zy = tf.reshape(tf.concat([z, y], -1), [-1, self.latent.latent_size + self.num_classes])
        params = tf.reshape(self.decoder(zy),
                            tf.concat([batch, [self.likelihood.params_size]], 0))
        return self.likelihood.make(params)

    def call(self, inputs):
        """Reconstructions E[x|z = E_q z, y] [batch, H, W, C] of a labelled batch.

        Bare images (as Keras builds a model) give the reconstructions under
        every class, [batch, num_classes, H, W, C].
        """
        if isinstance(inputs, (dict, tuple, list, base.Batch)):
            return self.reconstruction_summary(inputs)["mean"]
        x = self.read_examples(inputs)
        batch = tf.shape(x)[0]
        labels = tf.reshape(tf.tile(tf.range(self.num_classes)[tf.newaxis], [batch, 1]), [-1])
        tiled = tf.repeat(x, self.num_classes, axis=0)                        # [batch*K, H, W, C]
        recon = self.reconstruction_summary(base.Batch(tiled, labels))["mean"]
        return tf.reshape(recon, tf.concat([[batch, self.num_classes], self.image_shape], 0))

    def sample(self, labels, seed=None):
        """Class-conditional samples E[x|z, y], z ~ p(z), for labels int [n]: [n, H, W, C].

        A scalar `labels` n gives n samples cycling through the classes
        0, 1, ..., K-1, 0, ... (a grid with one class per column).
        """
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 0:
            labels = tf.range(self.check_count("num_samples", labels, 0)) % self.num_classes
        else:
            labels = self.check_labels(labels)
        n = tf.shape(labels)[0]
        z = self.prior().sample(n, seed=self.eval_seed(seed))
        return self.decode(z, labels).mean()

    def serving_endpoints(self, chunk_size=100, log_prob_samples=serving.DEFAULT_LOG_PROB_SAMPLES):
        """`VAE.serving_endpoints` with labels int32 [n] beside every batch (checked in
        graph to lie in [0, num_classes), besides the checks of x, z and the counts).

        Batch-only: encode(x, labels) -> {loc, scale}; decode(z, labels) -> {mean};
        sample(labels, index) -> {images}: sample number `index` of class
        `labels`; elbo(x, labels) -> {elbo}; log_prob(x, labels) -> {log_prob}
        (of log p(x|y), K = `log_prob_samples`).
        Seeded: sample_seeded(labels, seed); elbo_seeded(x, labels, seed);
        log_prob_seeded(x, labels, num_samples, seed).
        """
        log_prob_samples = self.check_count("log_prob_samples", log_prob_samples, 1)
        image = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        labels = tf.TensorSpec([None], tf.int32, name="labels")
        latent = tf.TensorSpec([None, self.latent.latent_size], tf.float32, name="z")
        index = tf.TensorSpec([None], tf.int32, name="index")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")

        def per_example(fn, x, y):
            batch = self.read_batch((x, y), check_values=True)
            return serving.per_example(fn, batch.x, batch.context)

        def sample(y, i):
            return {"images": serving.indexed_samples(
                lambda s, row: self.sample(row, seed=s), self.image_shape, i,
                self.check_labels(y))}

        return [
            ("encode", lambda x, y: self.posterior_summary(
                self.read_examples(x, check_values=True), self.check_labels(y)),
             [image, labels]),
            ("decode", lambda z, y: {"mean": self.decode(
                self.check_latents(z), self.check_labels(y)).mean()}, [latent, labels]),
            ("sample", sample, [labels, index]),
            ("elbo", lambda x, y: {"elbo": per_example(
                lambda row, label: self.elbo(row, label, seed=serving.fixed_seed()), x, y)},
             [image, labels]),
            ("log_prob", lambda x, y: {"log_prob": per_example(
                lambda row, label: self.log_prob(
                    row, label, num_samples=log_prob_samples, chunk_size=chunk_size,
                    seed=serving.fixed_seed()), x, y)}, [image, labels]),
            ("sample_seeded", lambda y, s: {"images": self.sample(y, seed=s)}, [labels, seed]),
            ("elbo_seeded", lambda x, y, s: {"elbo": self.elbo(x, y, seed=s)},
             [image, labels, seed]),
            ("log_prob_seeded", lambda x, y, n, s: {"log_prob": self.log_prob(
                x, y, num_samples=n, chunk_size=chunk_size, seed=s)},
             [image, labels, count, seed]),
        ]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
