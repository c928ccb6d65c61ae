"""Semi-supervised M2 (Kingma et al. 2014; book §4.5.1).

Generative model p(y) p(z) p(x|y, z) with p(y) uniform over K classes and
p(z) = N(0, I); inference q(y|x) (a classifier) and q(z|x, y) (the
conditional VAE's encoder, `ConditionalVAE`). With L(x, y) the ELBO of a
labelled pair,

    L(x, y) = E_q(z|x,y)[log p(x|y, z)] + log p(y) - KL(q(z|x, y) || p(z)) <= log p(x, y),

an unlabelled x treats y as a latent summed out EXACTLY (K decoder passes):

    U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) <= log p(x).

The loss of a step with a labelled batch (x_l, y_l) and an unlabelled batch
x_u is

    mean_l[-L(x_l, y_l) + alpha (-log q(y_l|x_l))] + mean_u[-U(x_u)],

alpha the weight of the classification term per labelled example (Kingma
et al.'s alpha = 0.1 N over the whole data set is alpha = 0.1 N / N_l per
labelled example). All K bounds of an unlabelled x share one noise draw eps
(z_y = mu(x, y) + sigma(x, y) eps): common random numbers, so U(x) is the
q(y|x)-weighted sum of the very L(x, y) that `labelled_bound` returns.
M1+M2 (M2 on the latents of a trained VAE) is assembled in `zoo/m1_features.py` and `zoo.m2`.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import families
from tfvae.objectives import base as objective_base
from tfvae.objectives import elbo as objectives
from tfvae.objectives import semi_supervised
from tfvae.distributions import priors
from tfvae.models import base
from tfvae.models import cvae
from tfvae.models import serving

_PACKAGE = "tfvae"
tfd = tfp.distributions


def _check_no_context(context):
    if context is not None:
        raise ValueError("M2 infers the label (y is summed out of log p(x)): pass no `context`. "
                         f"Received: context={context!r}")


@keras.saving.register_keras_serializable(_PACKAGE)
class M2(cvae.ConditionalVAE):
    """The M2 model: classifier q(y|x), conditional VAE q(z|x, y) p(x|y, z), p(y) uniform.

    Training batches are dicts {"labelled": {"image", "label"}, "unlabelled":
    {"image", ...}}; held-out batches are plain {"image", "label"} (the label
    is only used for the accuracy). The held-out `elbo` is U(x), a bound on
    log p(x) with y summed out.

    Args:
      encoder, decoder, latent, likelihood, num_classes: as `ConditionalVAE`;
        the posterior must be a `DiagonalGaussian` without flow and the prior
        the standard normal.
      classifier: layer mapping images [batch, H, W, C] to logits [batch, K].
      objective: a `semi_supervised.SemiSupervisedBound` (None: alpha = 1),
        whose `alpha` weighs -log q(y|x) per labelled example.
      **kwargs: `seed`, `name`, ...
    """

    def __init__(self, encoder, decoder, latent, likelihood, *, classifier, num_classes,
                 objective=None, **kwargs):
        objective = objective_base.deserialize(
            semi_supervised.SemiSupervisedBound() if objective is None else objective)
        if not isinstance(objective, semi_supervised.SemiSupervisedBound):
            raise ValueError("M2 trains the semi-supervised bound: `objective` must be a "
                             f"SemiSupervisedBound. Received: objective={objective!r}")
        super().__init__(encoder, decoder, latent, likelihood, num_classes=num_classes,
                         objective=objective, **kwargs)
        if (not isinstance(self.latent.posterior_family, families.DiagonalGaussian)
                or self.latent.flow is not None
                or not isinstance(self.latent.prior_layer, priors.StandardNormal)):
            raise ValueError("M2 needs a DiagonalGaussian posterior without flow and the standard "
                             f"normal prior. Received: latent={self.latent!r}")
        self.classifier = base.deserialize(classifier)

    def build(self, input_shape):
        super().build(input_shape)
        if not self.classifier.built:
            self.classifier.build(tuple(input_shape))

    def test_metric_names(self):
        return ("accuracy",)

    # ------------------------------------------------------------------ inputs
    def read_batch(self, data, check_values=False):
        """Training {"labelled", "unlabelled"} -> Batch(x_u, labelled=(x_l, y_l));
        a held-out labelled batch -> Batch(x, labels=y); bare images -> Batch(x)."""
        if isinstance(data, base.Batch):
            return data
        if isinstance(data, dict) and "labelled" in data:
            labelled = super().read_batch(data["labelled"], check_values)
            return base.Batch(self.read_examples(data["unlabelled"], check_values),
                              labelled=(labelled.x, labelled.context))
        if isinstance(data, dict) and data.get("label") is not None or (
                isinstance(data, (tuple, list)) and len(data) == 2):
            labelled = super().read_batch(data, check_values)
            return base.Batch(labelled.x, labels=labelled.context)
        return base.Batch(self.read_examples(data, check_values))

    # ------------------------------------------------------------ classifier
    def classify(self, x):
        """q(y|x) class probabilities [batch, K] for images x [batch, H, W, C]."""
        return tf.nn.softmax(self.classifier(x), axis=-1)

    def call(self, inputs):
        """Reconstructions E[x|z = E_q z, y] [batch, H, W, C] with y the most probable class."""
        return self.reconstruction_summary(self.read_examples(inputs))["mean"]

    def reconstruction_summary(self, data):
        """q(z|x, y)'s summary and E[x|z = E_q z, y] with y the batch's labels, or the
        classifier's most probable class for unlabelled images."""
        batch = self.read_batch(data)
        labels = batch.labels
        if labels is None:
            labels = tf.argmax(self.classifier(batch.x), axis=-1, output_type=tf.int32)
        return super().reconstruction_summary(base.Batch(batch.x, labels))

    # --------------------------------------------------------------- bounds
    def labelled_bound(self, x, labels, eps, features=None):
        """L(x, y) [batch] with z = mu + sigma * eps; `features` = encoder(x) if known.

        Returns:
          Dict of [batch] tensors: `bound` L(x, y), `log_likelihood`
          log p(x|y, z), `kl` KL(q(z|x, y) || p(z)) (closed form).
        """
        h = self.encoder(x) if features is None else features
        q = self.posterior_from_features(h, labels)
        z = q.mean() + q.stddev() * eps                                # [batch, d], §2.4
        log_likelihood = self.decode(z, labels).log_prob(x)
        kl = objectives.kl_divergence(q, self.prior())
        log_prior_y = -math.log(self.num_classes)
        return {"bound": log_likelihood + log_prior_y - kl,
                "log_likelihood": log_likelihood, "kl": kl}

    def class_bounds(self, x, seed):
        """L(x, y) for every class y, sharing one eps per example: dict of [batch, K]."""
        k = self.num_classes
        batch = tf.shape(x)[0]
        eps = tf.random.stateless_normal([batch, self.latent.latent_size], seed,
                                         dtype=self.compute_dtype)
        labels = tf.tile(tf.range(k), [batch])                          # [batch*K]
        tiled = self.labelled_bound(tf.repeat(x, k, axis=0), labels, tf.repeat(eps, k, axis=0),
                                    features=tf.repeat(self.encoder(x), k, axis=0))
        return {key: tf.reshape(value, [batch, k]) for key, value in tiled.items()}

    def unlabelled_terms(self, x, seed):
        """U(x) [batch] and its rate/distortion split, y summed out exactly.

        distortion = -sum_y q(y|x) log p(x|y, z_y);
        rate = sum_y q(y|x) KL(q(z|x, y) || p(z)) + KL(q(y|x) || p(y));
        U = -(distortion + rate) = sum_y q(y|x) L(x, y) + H(q(y|x)).
        """
        log_probs = tf.nn.log_softmax(self.classifier(x), axis=-1)     # [batch, K]
        probs = tf.exp(log_probs)
        bounds = self.class_bounds(x, seed)
        entropy = -tf.reduce_sum(probs * log_probs, axis=-1)
        return {"bound": tf.reduce_sum(probs * bounds["bound"], -1) + entropy,
                "distortion": -tf.reduce_sum(probs * bounds["log_likelihood"], -1),
                "rate": tf.reduce_sum(probs * bounds["kl"], -1)
                        + math.log(self.num_classes) - entropy}

    # ------------------------------------------------------------- objective
    @classmethod
    def from_config(cls, config):
        # Configs written before objectives were objects hold `alpha` and the ELBO's
        # neutral options.
        config = dict(config)
        for key in ("analytic_kl", "beta", "kl_warmup_steps", "free_bits", "free_bits_groups"):
            config.pop(key, None)
        if "alpha" in config:
            config["objective"] = semi_supervised.SemiSupervisedBound(config.pop("alpha"))
        return cls(**config)

    def semi_supervised_terms(self, batch, seed):
        """The pieces of the M2 objective (`semi_supervised.SemiSupervisedBound`) for a batch.

        A training batch (unlabelled x_u with a labelled (x_l, y_l)) gives
        L(x_l, y_l); a held-out labelled batch only its labels.

        Returns:
          Dict: `labelled_bound` L(x_l, y_l) [B_l] or None; `logits` of
          q(y|x_l) [B_l, K] and `labels` y_l [B_l]; `unlabelled` the terms of
          U(x_u) (`unlabelled_terms`).

        Raises:
          ValueError: a batch without labels.
        """
        batch = self.as_batch(batch)
        seeds = tf.random.experimental.stateless_split(seed, 2)
        labelled_bound = None
        if batch.labelled is not None:
            x_l, y_l = batch.labelled
            labelled_bound = self.labelled_bound(x_l, y_l, tf.random.stateless_normal(
                [tf.shape(x_l)[0], self.latent.latent_size], seeds[0],
                dtype=self.compute_dtype))["bound"]
        elif batch.labels is not None:
            x_l, y_l = batch.x, batch.labels
        else:
            raise ValueError("M2's objective needs labels: a training batch {'labelled', "
                             "'unlabelled'} or a labelled held-out batch. Received: no labels")
        return {"labelled_bound": labelled_bound, "logits": self.classifier(x_l),
                "labels": y_l, "unlabelled": self.unlabelled_terms(batch.x, seeds[1])}

    def elbo(self, x, context=None, num_samples=1, seed=None):
        """U(x) [batch]: the ELBO of log p(x) with y summed out, averaged over `num_samples` eps.

        `x`: images [batch, H, W, C] or a batch dict (its labels are ignored);
        `context` must be None (M2 does not condition on y: it infers it).
        """
        _check_no_context(context)
        x = self.read_examples(x, check_values=True)
        seed = self.eval_seed(seed)
        repeated = tf.tile(x, [num_samples, 1, 1, 1])                  # [samples*batch, ...]
        bound = self.unlabelled_terms(repeated, seed)["bound"]
        return tf.reduce_mean(tf.reshape(bound, [num_samples, -1]), axis=0)

    # ------------------------------------------------------------- protocol
    def sample_posterior(self, batch, num_samples, seed):
        """(y, z) ~ q(y|x) q(z|x, y), as [S, B, K + d] (one-hot y, then z), and
        log q(y, z|x) [S, B]: M2's latents for any protocol estimator (AIS, ...)."""
        x = batch.x
        seed_y, seed_z = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        q_y = tfd.Categorical(logits=self.classifier(x))                    # batch [B]
        y = q_y.sample(num_samples, seed=seed_y)                            # [S, B]
        n = tf.shape(x)[0]
        features = tf.tile(self.encoder(x), [num_samples, 1])               # [S * B, F]
        q_z = self.posterior_from_features(features, tf.reshape(y, [-1]))
        z, log_q_z = q_z.experimental_sample_and_log_prob(seed=seed_z)     # [S * B, d]
        latent = tf.concat([self.one_hot(y), tf.reshape(z, [num_samples, n, -1])], -1)
        return latent, q_y.log_prob(y) + tf.reshape(log_q_z, [num_samples, n])

    def log_joint(self, batch, z):
        """log p(x, y, z) = log p(x|y, z) + log p(z) + log p(y) [S, B] for z as
        `sample_posterior` returns it (one-hot y, then z)."""
        k = self.num_classes
        y = tf.argmax(z[..., :k], axis=-1, output_type=tf.int32)           # [S, B]
        z = z[..., k:]
        return (self.decode(z, y).log_prob(batch.x) + self.prior().log_prob(z)
                - math.log(k))

    def log_prob(self, x, context=None, num_samples=1000, chunk_size=100, seed=None):
        """Importance-sampled log p(x) [batch], y summed out exactly (§2.6).

        log p(x) ~= log sum_y p(y) (1/K) sum_k p(x|y, z_k) p(z_k) / q(z_k|x, y),
        z_k ~ q(z|x, y): K = `num_samples` samples for each of the classes.
        """
        _check_no_context(context)
        x = self.read_examples(x, check_values=True)
        k = self.num_classes
        labels = tf.tile(tf.range(k), [tf.shape(x)[0]])                # [batch*K]
        log_p_x_given_y = super().log_prob(base.Batch(tf.repeat(x, k, axis=0), labels),
                                           num_samples=num_samples, chunk_size=chunk_size,
                                           seed=seed)                  # [batch*K]
        return tf.reduce_logsumexp(tf.reshape(log_p_x_given_y, [-1, k]), axis=-1) - math.log(k)

    def serving_endpoints(self, chunk_size=100, log_prob_samples=serving.DEFAULT_LOG_PROB_SAMPLES):
        """`ConditionalVAE`'s encode/decode/sample/sample_seeded (with labels), plus
        classify(x) -> {probs} [n, K], and of log p(x) with y summed out:
        batch-only elbo(x) -> {elbo} (U(x)) and log_prob(x) -> {log_prob}
        (K = `log_prob_samples`), seeded elbo_seeded(x, seed) and
        log_prob_seeded(x, num_samples, seed)."""
        log_prob_samples = self.check_count("log_prob_samples", log_prob_samples, 1)
        image = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        count = tf.TensorSpec([], tf.int32, name="num_samples")
        conditional = [e for e in super().serving_endpoints(chunk_size, log_prob_samples)
                       if e[0] in ("encode", "decode", "sample", "sample_seeded")]

        def per_example(fn, x):
            return serving.per_example(fn, self.read_examples(x, check_values=True))

        return conditional[:3] + [
            ("classify", lambda x: {"probs": self.classify(
                self.read_examples(x, check_values=True))}, [image]),
            ("elbo", lambda x: {"elbo": per_example(
                lambda row: self.elbo(row, seed=serving.fixed_seed()), x)}, [image]),
            ("log_prob", lambda x: {"log_prob": per_example(lambda row: self.log_prob(
                row, num_samples=log_prob_samples, chunk_size=chunk_size,
                seed=serving.fixed_seed()), x)}, [image]),
            *conditional[3:],
            ("elbo_seeded", lambda x, s: {"elbo": self.elbo(x, seed=s)}, [image, seed]),
            ("log_prob_seeded", lambda x, n, s: {"log_prob": self.log_prob(
                x, num_samples=n, chunk_size=chunk_size, seed=s)}, [image, count, seed]),
        ]

    def get_config(self):
        return {**super().get_config(),
                "classifier": keras.saving.serialize_keras_object(self.classifier)}
