"""The semi-supervised M2 objective with its classification term (Kingma et al. 2014; book §4.5.1).

With L(x, y) the ELBO of a labelled pair and U(x) = sum_y q(y|x) L(x, y) +
H(q(y|x)) the bound of an unlabelled x (y summed out exactly), a step with a
labelled batch (x_l, y_l) and an unlabelled batch x_u minimizes

    mean_l[-L(x_l, y_l)] + alpha mean_l[-log q(y_l|x_l)] + mean_u[-U(x_u)].

A held-out labelled batch gives U(x) with the classifier's accuracy and
cross-entropy on its labels (and no labelled bound). The model supplies
the pieces (`tfvae.models.m2.M2.semi_supervised_terms`).
"""

import keras
import tensorflow as tf

from tfvae.objectives import base
from tfvae import validation


@keras.saving.register_keras_serializable(base.PACKAGE)
class SemiSupervisedBound(base.Objective):
    """M2's loss: the labelled and unlabelled bounds and alpha times the classification loss.

    Logged: `loss`, `elbo` (mean U(x_u)), `rate`, `distortion` (of U),
    `beta` (1: the exact bound), `accuracy` and `classification_loss` of
    q(y|x) on the labelled examples.

    Args:
      alpha: weight of -log q(y|x) per labelled example, >= 0 (Kingma et
        al.'s 0.1 N over the data set is 0.1 N / N_l per labelled example).

    Raises:
      ValueError: alpha < 0; in `bind`, a model without M2's terms.
    """

    metric_names = ("loss", "elbo", "rate", "distortion", "beta", "accuracy",
                    "classification_loss")

    def __init__(self, alpha=1.0):
        super().__init__(analytic_kl=True)
        self.alpha = validation.non_negative("alpha", alpha)

    def bind(self, model):
        if not callable(getattr(model, "semi_supervised_terms", None)):
            raise ValueError("SemiSupervisedBound trains a model with a classifier q(y|x) and "
                             "a label-conditional bound (`tfvae.models.m2.M2`). Received: "
                             f"{type(model).__name__}")

    def __call__(self, model, batch, seed, training=False):
        del training
        terms = model.semi_supervised_terms(batch, seed)
        labelled = terms["labelled_bound"]
        labelled_loss = 0.0 if labelled is None else -tf.reduce_mean(labelled)
        logits, labels = terms["logits"], terms["labels"]
        classification = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(
            tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32))
        unlabelled = terms["unlabelled"]
        elbo = tf.reduce_mean(unlabelled["bound"])
        return {"loss": labelled_loss - elbo + self.alpha * classification, "elbo": elbo,
                "rate": tf.reduce_mean(unlabelled["rate"]),
                "distortion": tf.reduce_mean(unlabelled["distortion"]),
                "beta": tf.constant(1.0), "accuracy": accuracy,
                "classification_loss": classification}

    def get_config(self):
        return {"alpha": self.alpha}
