"""The conditional VAE p(x|z, y) q(z|x, y) (Sohn et al. 2015; book §1.3.1).

A label y (one of `num_classes`) conditions both networks: its one-hot code
is concatenated to the encoder's features h before the `LatentLayer`, and to
z before the decoder. The prior stays p(z) = N(0, I) (Sohn et al.'s simplest
variant), so the ELBO is that of the unconditional VAE with y as context:

    log p(x|y) >= E_q(z|x,y)[log p(x|z, y)] - KL(q(z|x, y) || p(z)).

`ConditionalVAE` overrides only what differs from `VAE`: how (x, y) are read
from a batch, `encode`/`decode` with y, and the signatures that take labels.
Class-conditional sampling is `sample(labels)`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae import objectives
from tfvae import streams
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
      **kwargs: the other `VAE` arguments (beta, free bits, seed, ...).
    """

    # Its posterior_summary and decode take labels (read by the training loop).
    conditional = True

    def __init__(self, encoder, decoder, latent, likelihood, *, num_classes, **kwargs):
        self.num_classes = check_num_classes(num_classes)
        super().__init__(encoder, decoder, latent, likelihood, **kwargs)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
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

    def _check_labels(self, labels):
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

    def _images(self, data, check_values=False):
        """Reads a labelled batch: returns (x [batch, H, W, C], labels int32 [batch]).

        For this model the training "input" of `objective`/`compute_terms` is
        the pair; `VAE.train_step` and `test_step` pass it on unchanged.
        """
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
            labels = self._check_labels(labels)
        return super()._images(images, check_values), labels

    # -------------------------------------------------------------- inference
    def encode(self, x, labels):
        """Returns q(z|x, y) for x [batch, H, W, C], labels [batch]: event [latent_size]."""
        return self.posterior_from_features(self.encoder(x), labels)

    def posterior_from_features(self, h, labels):
        """q(z|x, y) from encoder features h [batch, F] (computed once for all y)."""
        return self.latent.posterior(tf.concat([h, self.one_hot(labels)], axis=-1))

    def decode(self, z, labels):
        """Returns p(x|z, y) for z [..., latent_size] and labels broadcastable to [...]."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        batch = tf.shape(z)[:-1]
        y = tf.broadcast_to(self.one_hot(labels), tf.concat([batch, [self.num_classes]], 0))
        zy = tf.reshape(tf.concat([z, y], -1), [-1, self.latent.latent_size + self.num_classes])
        params = tf.reshape(self.decoder(zy),
                            tf.concat([batch, [self.likelihood.params_size]], 0))
        return self.likelihood.make(params)

    def posterior_summary(self, x, labels):
        """{"loc", "scale"} [batch, latent_size] of q(z|x, y)."""
        q = self.encode(x, labels)
        return {"loc": q.mean(), "scale": q.stddev()}

    def call(self, inputs):
        """Reconstructions E[x|z = E_q z, y] [batch, H, W, C] of a labelled batch.

        Bare images (as Keras builds a model) give the reconstructions under
        every class, [batch, num_classes, H, W, C].
        """
        if isinstance(inputs, (dict, tuple, list)):
            x, labels = self._images(inputs)
            return self.decode(self.posterior_summary(x, labels)["loc"], labels).mean()
        x = vae.VAE._images(self, inputs)
        batch = tf.shape(x)[0]
        labels = tf.tile(tf.range(self.num_classes)[tf.newaxis], [batch, 1])  # [batch, K]
        tiled = tf.repeat(x, self.num_classes, axis=0)                        # [batch*K, H, W, C]
        recon = self.decode(self.posterior_summary(tiled, tf.reshape(labels, [-1]))["loc"],
                            tf.reshape(labels, [-1])).mean()
        return tf.reshape(recon, tf.concat([[batch, self.num_classes], self.image_shape], 0))

    def sample(self, labels, seed=None):
        """Class-conditional samples E[x|z, y], z ~ p(z), for labels int [n]: [n, H, W, C].

        A scalar `labels` n gives n samples cycling through the classes
        0, 1, ..., K-1, 0, ... (a grid with one class per column).
        """
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 0:
            labels = tf.range(labels) % self.num_classes
        n = tf.shape(labels)[0]
        z = self.prior().sample(n, seed=self._seed(seed, self.eval_seed_generator))
        return self.decode(z, labels).mean()

    # ---------------------------------------------------------------- objective
    def compute_terms(self, inputs, seed, num_samples=1):
        """Per-example ELBO pieces for inputs = (x [batch, H, W, C], labels [batch]).

        Returns:
          As `VAE.compute_terms`, with q = q(z|x, y) and p(x|z, y).
        """
        x, labels = inputs
        q = self.encode(x, labels)
        p = self.prior()
        z, kl = self.sample_and_kl(q, p, num_samples, seed)
        log_likelihood = self.decode(z, labels).log_prob(x)          # [samples, batch]
        return {"log_likelihood": log_likelihood, "kl": kl, "q": q, "p": p, "z": z}

    def _labelled(self, x, labels):
        """(x, labels) from images and labels, or from a batch (dict or pair) when labels is None."""
        return self._images(x if labels is None else (x, labels), check_values=True)

    def elbo(self, x, labels=None, num_samples=1, seed=None):
        """Per-example ELBO of log p(x|y) [batch], averaged over `num_samples` z.

        Args:
          x: images [batch, H, W, C], or a whole batch {"image", "label"}.
          labels: int [batch]; None when `x` is a batch.
          num_samples: draws of z averaged.
          seed: int32 [2] stateless seed (None: the model's generator).
        """
        inputs = self._labelled(x, labels)
        terms = self.compute_terms(inputs, self._seed(seed, self.eval_seed_generator), num_samples)
        return tf.reduce_mean(terms["log_likelihood"] - terms["kl"], axis=0)

    def log_prob(self, x, labels=None, num_samples=1000, chunk_size=100, seed=None):
        """Importance-sampled log p(x|y) [batch] with q(z|x, y) as proposal (§2.6).

        `x` and `labels` as in `elbo`; K = `num_samples` in chunks of `chunk_size`.
        """
        x, labels = self._labelled(x, labels)
        if isinstance(num_samples, (int, np.integer)):
            if num_samples < 1:
                raise ValueError(f"`num_samples` must be >= 1. Received: num_samples={num_samples}")
            chunk_size = min(chunk_size, int(num_samples))
        # A stream of its own: the same seed in `elbo` must not give the same draws.
        seed = streams.fold(self._seed(seed, self.eval_seed_generator), "importance")
        q = self.encode(x, labels)
        p = self.prior()

        def log_weights(chunk):
            z, log_q = q.experimental_sample_and_log_prob(
                chunk_size, seed=tf.random.experimental.stateless_fold_in(seed, chunk))
            return self.decode(z, labels).log_prob(x) + p.log_prob(z) - log_q  # [chunk, batch]

        return objectives.chunked_log_mean_exp(log_weights, num_samples, chunk_size)

    def serving_endpoints(self, chunk_size=100):
        """Signatures: encode(x, labels), decode(z, labels), sample(labels, seed),
        elbo(x, labels, seed), log_prob(x, labels, num_samples, seed) (of log p(x|y))."""
        image = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        labels = tf.TensorSpec([None], tf.int32, name="labels")
        latent = tf.TensorSpec([None, self.latent.latent_size], tf.float32, name="z")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")
        return [
            ("encode", self.posterior_summary, [image, labels]),
            ("decode", lambda z, y: {"mean": self.decode(z, y).mean()}, [latent, labels]),
            ("sample", lambda y, s: {"images": self.sample(y, seed=s)}, [labels, seed]),
            ("elbo", lambda x, y, s: {"elbo": self.elbo(x, y, seed=s)}, [image, labels, seed]),
            ("log_prob", lambda x, y, n, s: {"log_prob": self.log_prob(
                x, y, num_samples=n, chunk_size=chunk_size, seed=s)},
             [image, labels, count, seed]),
        ]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
