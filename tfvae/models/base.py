"""`LatentVariableModel`: what every tfvae model shares; a model class adds only its math.

The base owns the parts that are the same for a VAE, a hierarchical VAE, a
flow density model and every variant:

  - the batch: `read_batch(data)` turns whatever `fit`, `evaluate` or a user
    hands over (a dict {"image", "label"}, an (x, labels) pair, a tensor)
    into one `Batch(x, context, labelled)`, read once per step, with the
    shape and dtype checked and, for estimators and the serving endpoints,
    the values (a non-empty batch; finite; inside the likelihood's support),
    and the counts K of `log_prob` and n of `sample` (`check_count`), eagerly
    and in graph (the exported SavedModel);
  - seeds: a training and an evaluation `SeedGenerator` from `seed`, or an
    explicit stateless seed; the IS draws come from their own stream;
  - metric trackers of the objective's terms (`track_metrics`), plus
    `skipped_steps` and `grad_norm` for every model;
  - the guarded train step (non-finite and `max_grad_norm` steps skipped and
    counted; the applied steps' global gradient norm logged) and the
    held-out step (per-example averages);
  - the chunked importance-sampling skeleton of `log_prob` (book §2.6):
    log p(x) ~= log (1/K) sum_k w_k with log w = `log_weights(...)`;
  - the build config, `get_config` of the shared arguments.

The protocol a model class implements (shapes for a batch of B examples):

  - `objective(data, seed, training=False)` -> {"loss": scalar, "elbo":
    scalar, ...}: the training objective and its named terms. A model that
    trains on an `Objective` object (`tfvae.objectives`) takes it as its
    `objective` argument (`use_objective`) and implements
    `objective_terms(batch, seed, num_samples, analytic_kl, training)` ->
    `objectives.base.Terms` and `kl_support()` -> `KLSupport`; the base's
    `objective` then hands the terms to the object. (A flow density, whose
    objective is its exact likelihood, overrides `objective` instead.)
  - `sample_posterior(batch, num_samples, seed)` -> (z [S, B, D], log q(z|x)
    [S, B]): draws from the (amortized) posterior, z flattened per example;
  - `log_joint(batch, z)` -> log p(x, z) [S, B] for z as `sample_posterior`
    returns it;
  - `elbo(x, context=None, num_samples=1, seed=None)` -> [B].
  - optionally `log_weights_fn(batch)` -> a function (num_samples, seed) ->
    log importance weights [S, B] for `log_prob`'s chunks; the default is
    `log_joint - log q` at `sample_posterior`'s draws, a model that can
    share work across chunks (q and p computed once) or has a cheaper single
    pass (a hierarchy's joint terms) overrides it.

So any estimator (IS, AIS, local optimisation of q, HMC) can work on any
model class through `sample_posterior` and `log_joint` alone.
"""

import collections
import math

import keras
import numpy as np
import tensorflow as tf

from tfvae.objectives import base as objective_base
from tfvae.objectives import elbo as objectives
from tfvae import streams
from tfvae import validation
from tfvae.models import guarded_step

Batch = collections.namedtuple("Batch", ["x", "context", "labels", "labelled"],
                               defaults=(None, None, None))
"""One batch as a model reads it.

  x: the examples [B, *example_shape].
  context: an observed condition of p and q (the labels of a conditional
    VAE) [B], or None.
  labels: labels of x that the model does not condition on (a classifier's
    held-out targets) [B], or None.
  labelled: a separate labelled (x_l, labels_l) sub-batch (semi-supervised
    training), or None.
"""

def deserialize(obj):
    """A Keras object from its serialized config (a dict), or `obj` itself."""
    return keras.saving.deserialize_keras_object(obj) if isinstance(obj, dict) else obj


# Metrics of the train step only (the held-out step reports the objective's terms).
TRAINING_ONLY = ("skipped_steps", "grad_norm", "log_weight_prior")


# ------------------------------------------------------------------ input checks
# Eagerly a bad input raises ValueError; in a graph (a `tf.function`, the exported
# SavedModel, whose callers may import only TensorFlow) the checked tensor carries
# assertions that fail with an `InvalidArgumentError` naming the input before any op
# uses the value (both messages name the input as `name`).

def unwrap(data):
    """A batch as `fit` or `train_on_batch` gives it: `train_on_batch(x)` packs x
    into (x, None, None) (no targets, no weights); that tuple's x is returned,
    anything else as it is."""
    if isinstance(data, tuple) and data and all(d is None for d in data[1:]):
        return data[0]
    return data


def check_count(name, value, minimum):
    """Returns `value`, a count (a Python int or an integer scalar tensor), if >= `minimum`.

    Raises:
      ValueError: `value` is not an integer scalar, or (a Python int or an eager
        tensor) is < `minimum`: "`name` must be an integer >= minimum".
      tf.errors.InvalidArgumentError: in a graph, when the returned tensor is
        evaluated with a value < `minimum` (the same message).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer, tf.Tensor, tf.Variable, np.ndarray)):
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    if isinstance(value, (int, np.integer)):
        return validation.at_least(name, value, minimum)
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_integer or value.shape.rank not in (0, None):
        raise ValueError(f"`{name}` must be an integer scalar >= {minimum}. Received: a "
                         f"{value.dtype.name} tensor of shape {value.shape}")
    if tf.executing_eagerly():
        validation.at_least(name, int(value.numpy()), minimum)
        return value
    check = tf.debugging.assert_greater_equal(
        value, tf.cast(minimum, value.dtype), message=f"`{name}` must be an integer >= {minimum}.")
    with tf.control_dependencies([check]):
        return tf.identity(value)


def check_tensor(name, x, bounds=None):
    """Returns x [B, ...] if it holds at least one example, only finite values, and values
    inside `bounds` (low, high) (None: the real line).

    Raises (eagerly ValueError, in a graph InvalidArgumentError when x is evaluated):
      "`name` is an empty batch", "`name` contains ... non-finite values", "`name` must
      lie in [low, high]" (eager) / "`name` must be >= low" / "... <= high" (graph).
    """
    if tf.executing_eagerly():
        values = x.numpy()
        if values.ndim and not values.shape[0]:
            raise ValueError(f"`{name}` is an empty batch: it holds no examples. "
                             f"Received: shape={list(values.shape)}")
        bad = int(np.size(values) - np.isfinite(values).sum())
        if bad:
            raise ValueError(f"`{name}` contains {bad} non-finite values (NaN or inf).")
        if bounds and values.size and (values.min() < bounds[0] or values.max() > bounds[1]):
            raise ValueError(
                f"`{name}` must lie in [{bounds[0]}, {bounds[1]}] for a Bernoulli likelihood. "
                f"Received: min={values.min()}, max={values.max()}")
        return x
    checks = []
    if x.shape.rank:
        checks.append(tf.debugging.assert_positive(
            tf.shape(x)[0], message=f"`{name}` is an empty batch: it holds no examples"))
    # In this order: an empty batch, a NaN are named as such, not as out of range.
    with tf.control_dependencies(checks):
        checks = [tf.debugging.assert_all_finite(x, f"`{name}` contains non-finite values.")]
    if bounds:
        with tf.control_dependencies(checks):
            checks = [
                tf.debugging.assert_greater_equal(x, tf.cast(bounds[0], x.dtype),
                                                  message=f"`{name}` must be >= {bounds[0]:g}."),
                tf.debugging.assert_less_equal(x, tf.cast(bounds[1], x.dtype),
                                               message=f"`{name}` must be <= {bounds[1]:g}.")]
    with tf.control_dependencies(checks):
        return tf.identity(x)


def check_numeric(name, data):
    """Raises ValueError unless `data` (an array, a tensor, a list) holds numbers."""
    dtype = getattr(data, "dtype", None)
    if dtype is None:
        dtype = np.asarray(data).dtype
    try:
        dtype = tf.as_dtype(dtype)
    except TypeError:
        dtype = None
    if dtype is None or not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
        received = getattr(dtype, "name", None) or str(getattr(data, "dtype", type(data).__name__))
        raise ValueError(f"`{name}` must hold numbers (a float or integer tensor). "
                         f"Received: dtype={received}")


class LatentVariableModel(keras.Model):
    """Base class of every tfvae model (see the module docstring for the protocol).

    Args:
      example_shape: shape of one example, e.g. (28, 28, 1) or (2,).
      max_grad_norm: skip (and count in `skipped_steps`) any step whose
        global gradient norm exceeds this; 0 disables.
      seed: int seed of the model's sampling noise (training and evaluation
        generators use `seed` and `seed + 1`), or None.
      weight_prior: None (maximum likelihood), or {"scale": sigma, "num_examples":
        N}: a Gaussian prior N(0, sigma^2 I) on every trainable weight, MAP
        training (book A.2.1; see `set_weight_prior`).
      **kwargs: `keras.Model` arguments (`name`, ...).
    """

    def __init__(self, example_shape, *, max_grad_norm=0.0, seed=None, weight_prior=None,
                 **kwargs):
        super().__init__(**kwargs)
        if not float(max_grad_norm) >= 0:
            raise ValueError(f"`max_grad_norm` must be >= 0. Received: max_grad_norm={max_grad_norm!r}")
        self.image_shape = tuple(int(d) for d in example_shape)
        self.max_grad_norm = float(max_grad_norm)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="train_seed")
        self.eval_seed_generator = keras.random.SeedGenerator(
            None if seed is None else seed + 1, name="eval_seed")
        self._trackers = {}          # the objective's terms: `track_metrics`
        self.training_objective = None   # an `Objective`, set by `use_objective`
        self._step_trackers = {"skipped_steps": keras.metrics.Sum(name="skipped_steps"),
                               "grad_norm": keras.metrics.Mean(name="grad_norm")}
        self.weight_prior = None
        if weight_prior is not None:
            self.set_weight_prior(**weight_prior)

    def set_weight_prior(self, scale, num_examples):
        """MAP training (book A.2.1): a Gaussian prior N(0, scale^2 I) on every trainable weight.

        Each training step's loss (a per-example mean) gets -log p(theta) / N,
        N = `num_examples` (the training set's size), so that the total over
        an epoch is the negative log posterior of theta up to a constant; the
        term is logged as `log_weight_prior` (log p(theta) / N, with its
        normalizing constant). Call before `compile`.

        Raises:
          ValueError: scale <= 0 or num_examples < 1.
        """
        if isinstance(scale, bool) or not float(scale) > 0:
            raise ValueError(f"The weight prior's `scale` must be > 0. Received: scale={scale!r}")
        if isinstance(num_examples, bool) or not int(num_examples) >= 1 \
                or int(num_examples) != num_examples:
            raise ValueError("The weight prior's `num_examples` must be an integer >= 1. "
                             f"Received: num_examples={num_examples!r}")
        self.weight_prior = {"scale": float(scale), "num_examples": int(num_examples)}
        self._step_trackers["log_weight_prior"] = keras.metrics.Mean(name="log_weight_prior")

    def log_weight_prior(self):
        """log p(theta) / N (a scalar) of the weight prior; 0 without one."""
        if self.weight_prior is None:
            return tf.constant(0.0)
        scale, n = self.weight_prior["scale"], self.weight_prior["num_examples"]
        variables = self.trainable_variables
        size = sum(int(np.prod(v.shape)) for v in variables)
        squares = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in variables])
        log_prior = -0.5 * squares / scale ** 2 - 0.5 * size * math.log(2 * math.pi * scale ** 2)
        return log_prior / n

    # ------------------------------------------------------------- protocol
    @property
    def likelihood_support(self):
        """What `log_prob` measures: "real", "discrete" or "binary" (`tfvae.evaluation.estimators`)."""
        raise NotImplementedError

    def test_metric_names(self):
        """Held-out metrics reported beside the likelihood at the end of a run (e.g. accuracy)."""
        return ()

    def reconstruction_summary(self, data):
        """For TensorBoard: {"loc", "scale"} of q at the posterior's summary points [B, D]
        and "mean", the reconstructions E[x|z = loc] [B, ...]; None for a model
        without latents to summarize (a flow density)."""
        del data
        return None

    def use_objective(self, objective, *extra_metrics):
        """Takes `objective` (an `Objective` or its config) as the model's training objective.

        Called at the end of a subclass' constructor (the model must be
        able to answer `kl_support()`): the objective checks that it can be
        honoured on this model (`Objective.bind`), and a metric tracker is
        added per term it reports, then per `extra_metrics` name (terms the
        model adds in `Terms.extras`).
        """
        objective = objective_base.deserialize(objective)
        objective.bind(self)
        self.training_objective = objective
        self.track_metrics(*objective.metric_names, *extra_metrics)

    def objective(self, data, seed, training=False):
        """The training objective's scalars for a batch ({"loss", "elbo", ...})."""
        if self.training_objective is None:
            raise NotImplementedError(
                f"{type(self).__name__} neither took an `Objective` nor overrides `objective`.")
        return self.training_objective(self, self.as_batch(data), seed, training)

    def objective_terms(self, batch, seed, num_samples=1, analytic_kl=True, training=False):
        """`objectives.base.Terms` of a batch at `num_samples` posterior draws."""
        raise NotImplementedError

    def kl_support(self):
        """`objectives.base.KLSupport`: which KL estimators and free-bits groups the model offers."""
        raise NotImplementedError

    def sample_posterior(self, batch, num_samples, seed):
        raise NotImplementedError

    def log_joint(self, batch, z):
        raise NotImplementedError

    def log_weights_fn(self, batch):
        """(num_samples, seed) -> log p(x, z) - log q(z|x) [num_samples, B] at z ~ q (§2.6)."""
        def log_weights(num_samples, seed):
            z, log_q = self.sample_posterior(batch, num_samples, seed)
            return self.log_joint(batch, z) - log_q
        return log_weights

    # ---------------------------------------------------------------- inputs
    def track_metrics(self, *names):
        """Adds a Mean tracker per objective term `objective` reports (train and held out)."""
        for name in names:
            self._trackers[name] = keras.metrics.Mean(name=name)

    def untrack_metrics(self, *names):
        """Removes trackers the subclass' objective does not report."""
        for name in names:
            del self._trackers[name]

    def check_shape(self, shape):
        """Raises ValueError unless `shape` is [batch, *example_shape]."""
        shape = tuple(shape)
        if len(shape) != 1 + len(self.image_shape) or tuple(shape[1:]) != self.image_shape:
            raise ValueError(
                f"Expected examples of shape [batch, {', '.join(map(str, self.image_shape))}]. "
                f"Received: shape={list(shape)}")

    def read_examples(self, data, check_values=False):
        """x [B, *example_shape] from a batch (dict with "image", tuple, or tensor)."""
        data = unwrap(data)
        if isinstance(data, Batch):
            data = data.x
        if isinstance(data, dict):
            data = data["image"]
        elif isinstance(data, (tuple, list)):
            data = data[0]
        check_numeric("x", data)
        x = tf.cast(data, self.compute_dtype)
        self.check_shape(x.shape)
        return self.check_values(x) if check_values else x

    def read_batch(self, data, check_values=False):
        """The `Batch` of `data` (any structure `fit` or a user passes); see `Batch`."""
        if isinstance(data, Batch):
            return data
        return Batch(self.read_examples(data, check_values))

    def value_range(self):
        """(low, high) of the likelihood's support on x, or None for the real line."""
        return (0.0, 1.0) if self.likelihood_support == "binary" else None

    def check_values(self, x):
        """Raises unless x [B, ...] is a non-empty batch of finite values inside
        `value_range()` (`check_tensor`: eagerly a ValueError; in a graph, a
        `tf.function` or the SavedModel, an `InvalidArgumentError` from assertions
        placed before x is used)."""
        return check_tensor("x", x, self.value_range())

    def check_latents(self, z):
        """z [N, ...] for `decode` if it is a non-empty batch of finite numbers (`check_tensor`)."""
        check_numeric("z", z)
        return check_tensor("z", tf.cast(z, self.compute_dtype))

    def check_count(self, name, value, minimum):
        """`check_count`: `value` if it is an integer >= `minimum` (checked in graph too)."""
        return check_count(name, value, minimum)

    def as_batch(self, data):
        """`data` as a `Batch` (unchecked values): what `objective` works on."""
        return self.read_batch(data)

    def optimizer_step(self):
        """The optimizer's step count, 0 before `compile`: the clock of every schedule
        (KL warm-up, capacity, temperature annealing)."""
        optimizer = getattr(self, "optimizer", None)   # Keras sets it in `compile`
        return optimizer.iterations if optimizer is not None else 0

    def eval_seed(self, seed):
        """`seed` as a stateless int32 [2] seed, or the evaluation generator's next one."""
        return self.seed_from(seed, self.eval_seed_generator)

    @staticmethod
    def seed_from(seed, generator):
        """`seed` as a stateless int32 [2] seed, or `generator`'s next one."""
        return tf.cast(generator.next() if seed is None else seed, tf.int32)

    # ------------------------------------------------------------- estimators
    def log_prob(self, x, context=None, num_samples=1000, chunk_size=100, seed=None):
        """Importance-sampled log p(x) [B] (book §2.6), K = `num_samples` in chunks.

        Args:
          x: examples [B, ...] or a whole batch (dict / pair).
          context: the condition [B] of a conditional model (None otherwise,
            or when `x` is a batch that carries it).
          num_samples: K >= 1 (a Python int or a scalar tensor).
          chunk_size: samples per chunk (bounds memory; a tensor K may mask
            the last chunk).
          seed: stateless seed [2] (None: the model's evaluation generator);
            the draws come from its "importance" stream.
        """
        num_samples, chunk_size = self.importance_counts(num_samples, chunk_size)
        batch = self.read_batch(x if context is None else (x, context), check_values=True)
        # A stream of its own: the same seed in `elbo` must not give the same draws.
        seed = streams.fold(self.eval_seed(seed), "importance")
        weights = self.log_weights_fn(batch)

        def log_weights(chunk):
            return weights(chunk_size, tf.random.experimental.stateless_fold_in(seed, chunk))

        return objectives.chunked_log_mean_exp(log_weights, num_samples, chunk_size)

    def importance_counts(self, num_samples, chunk_size):
        """(K, chunk_size) of `log_prob`, checked: K >= 1 (a Python int, or a scalar tensor
        checked in graph too), chunk_size a Python int >= 1 (min(chunk_size, K) for an int K:
        no masked-away samples for small K).

        Raises:
          ValueError: eagerly, K < 1 or chunk_size < 1 (naming the argument).
          tf.errors.InvalidArgumentError: in a graph, a tensor K < 1.
        """
        chunk_size = validation.at_least("chunk_size", chunk_size, 1)
        num_samples = self.check_count("num_samples", num_samples, 1)
        if isinstance(num_samples, int):
            chunk_size = min(chunk_size, num_samples)
        return num_samples, chunk_size

    # --------------------------------------------------------------- training
    @property
    def metrics(self):
        return [*self._trackers.values(), *self._step_trackers.values()]

    def _all_trackers(self):
        return {**self._trackers, **self._step_trackers}

    def train_step(self, data):
        batch = self.read_batch(data)
        seed = self.seed_from(None, self.seed_generator)
        with tf.GradientTape() as tape:
            values = self.training_values(data, batch, seed)
            if self.weight_prior is not None:
                log_prior = self.log_weight_prior()
                values = {**values, "loss": values["loss"] - log_prior,
                          "log_weight_prior": log_prior}
            # Gradients are summed over replicas: scale the per-replica loss (and by
            # float16's dynamic loss scale; identity otherwise).
            loss = self.optimizer.scale_loss(values["loss"] / guarded_step.num_replicas())
        applied, grad_norm = guarded_step.minimize_if_finite(
            self.optimizer, tape, loss, self.trainable_variables,
            max_grad_norm=self.max_grad_norm)
        guarded_step.update_metrics(self._all_trackers(), {**values, "grad_norm": grad_norm},
                                    applied)
        held_out_only = self.held_out_only_metric_names()
        return {m.name: m.result() for m in self.metrics if m.name not in held_out_only}

    def training_only_metric_names(self):
        """Metrics only a training step computes (not reported on held-out data)."""
        return TRAINING_ONLY

    def held_out_only_metric_names(self):
        """Metrics only held-out steps compute (a model whose training step does not
        evaluate its objective, MCMC-EM, names the objective's here)."""
        return ()

    def training_values(self, data, batch, seed):
        """The scalars of one training step: "loss" (minimized) and the logged terms.

        The objective's (`objective(batch, seed, training=True)`); a model with
        per-example state updates it here first (variational EM's E-step,
        `tfvae.models.vem`). Runs under the step's gradient tape.

        Args:
          data: the batch as the dataset gives it; batch: its `Batch`; seed: [2].
        """
        del data
        return self.objective(batch, seed, training=True)

    def test_step(self, data):
        """The objective on held-out data; per-example averages (a smaller last batch weighs less).

        Nothing is skipped here: a non-finite batch makes the epoch's held-out
        metrics non-finite, so a diverged model can never look like a good one.
        """
        batch = self.read_batch(data)
        values = self.objective(batch, self.eval_seed(None))
        batch_size = tf.shape(batch.x)[0]
        guarded_step.update_metrics(self._all_trackers(), values, tf.constant(True), batch_size)
        training_only = self.training_only_metric_names()
        return {m.name: m.result() for m in self.metrics if m.name not in training_only}

    # ------------------------------------------------------------ serialization
    def get_build_config(self):
        return {"input_shape": [None, *self.image_shape]}

    def build_from_config(self, config):
        self.build(tuple(config["input_shape"]))

    def get_config(self):
        config = {**super().get_config(), "max_grad_norm": self.max_grad_norm, "seed": self.seed,
                  "weight_prior": self.weight_prior}
        if self.training_objective is not None:
            config["objective"] = objective_base.serialize(self.training_objective)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
