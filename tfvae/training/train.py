"""The one training loop every zoo entry uses.

`run(config, build_model, workdir)`: data -> model under a `tf.distribute`
strategy -> `fit` with XLA, resumable checkpoints, early stopping on the
validation ELBO (book A.3), TensorBoard -> best weights -> test metrics ->
`.keras` file and SavedModel export. Re-running the same command in the same
workdir resumes; no finished epoch is lost.
"""

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile

import keras
import tensorflow as tf
from absl import logging

from tfvae.training import callbacks as callbacks_lib
from tfvae.training import figures
from tfvae.data import datasets as data_lib
from tfvae.evaluation import estimators as evaluation
from tfvae.nn import precision
from tfvae.training import export as export_lib
from tfvae.training import strategies
from tfvae import validation

STRATEGIES = strategies.STRATEGIES
BINARIZE = ("dynamic", "static", "none")
OPTIMIZERS = ("adam", "adamax")
# Fields added after workdirs were first written: a config.json without one
# of them was written with this value (it resumes unchanged).
# Held-out sets of dynamically binarized data are binarized once, with this
# seed, whatever the run's seed: runs stay comparable (issue: "test set
# binarized once with a fixed seed").
EVAL_BINARIZE_SEED = 0
# Keys that may change when a workdir is resumed; any other difference means
# a different experiment and is refused.
RESUMABLE_KEYS = frozenset({
    "epochs", "patience", "data_dir", "strategy", "tpu", "jit_compile", "steps_per_execution",
    "eval_num_samples", "export", "image_summaries", "max_eval_examples", "download",
    "entry", "export_versions_to_keep", "export_log_prob_samples"})


@dataclasses.dataclass
class TrainConfig:
    """Options shared by every zoo entry (entries subclass it with their own).

    Attributes:
      dataset: one of `tfvae.data.datasets.DATASETS`.
      data_dir: folder with the dataset's standard files ("" = default places).
      binarize: training images "dynamic" (fresh Bernoulli draw every
        epoch), "static" (once) or "none" (grey values). Held-out sets of
        binarized runs are binarized once with a fixed seed.
      epochs: total epochs (a resumed run continues up to this).
      batch_size: global batch size.
      seed: seed of the data order, binarization and the model's noise.
      learning_rate: Adam step size.
      optimizer: "adam" (default) or "adamax" (Kingma et al. 2016's ResNet VAE).
      ema_decay: Polyak averaging of the weights with this decay (e.g. 0.999);
        the averaged weights are the ones evaluated, saved and exported at
        the end (the validation ELBO during training uses the raw weights).
        0 disables.
      weight_prior_scale: sigma of a Gaussian prior N(0, sigma^2 I) on every
        trainable weight: MAP estimation of theta (book A.2.1), log p(theta) / N
        per example added to the objective and logged as `log_weight_prior`
        (N = training examples). 0 = maximum likelihood (no prior).
      patience: early stopping after this many epochs without a better
        validation ELBO; 0 disables.
      strategy: "default", "mirrored", "multi_worker" or "tpu".
      tpu: TPU address for strategy="tpu" ("" = the local/Colab TPU).
      jit_compile: compile the train step with XLA.
      steps_per_execution: train steps per compiled call.
      max_train_examples: use only the first N training examples (0 = all).
      max_eval_examples: use only the first N validation/test examples (0 = all).
      eval_num_samples: K of the final test IS log-likelihood (0 skips it).
      image_summaries: write reconstruction/sample grids to TensorBoard, and at the end
        as PNGs in WORKDIR/figures/ (`tfvae.training.figures`; the training curves are
        drawn there either way).
      export: write the SavedModel at the end, as a new version
        WORKDIR/export/<version>/ (TF Serving's layout; docs/serving.md).
      export_versions_to_keep: exported versions kept in WORKDIR/export (the
        newest; >= 1).
      export_log_prob_samples: K of the exported batch-only `log_prob(x)`
        signature (importance samples per example, >= 1).
      download: allow the standard download when no local copy is found.
      mixed_precision: "none" (float32 throughout), "bfloat16" or "float16": the
        encoder and decoder networks compute in that precision (Keras policy
        "mixed_bfloat16" / "mixed_float16", weights float32); distribution
        parameters, log-densities, KL, IS, the loss and the optimizer state stay
        float32. float16 adds dynamic loss scaling (for GPUs). Warns where the
        hardware emulates it, or XLA does not use it (tfvae.nn.precision).
    """

    dataset: str = "mnist"
    data_dir: str = ""
    binarize: str = "dynamic"
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    ema_decay: float = 0.0
    weight_prior_scale: float = 0.0
    patience: int = 10
    strategy: str = "default"
    tpu: str = ""
    jit_compile: bool = True
    steps_per_execution: int = 10
    max_train_examples: int = 0
    max_eval_examples: int = 0
    eval_num_samples: int = 0
    image_summaries: bool = True
    export: bool = True
    download: bool = True
    export_versions_to_keep: int = 3
    export_log_prob_samples: int = 100
    mixed_precision: str = "none"

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises ValueError naming the first invalid field."""
        validation.one_of("dataset", self.dataset, data_lib.DATASETS)
        validation.one_of("binarize", self.binarize, BINARIZE)
        validation.one_of("strategy", self.strategy, STRATEGIES)
        for name in ("epochs", "batch_size", "steps_per_execution", "export_versions_to_keep",
                     "export_log_prob_samples"):
            validation.at_least(name, getattr(self, name), 1)
        for name in ("patience", "max_train_examples", "max_eval_examples", "eval_num_samples"):
            validation.at_least(name, getattr(self, name), 0)
        validation.one_of("optimizer", self.optimizer, OPTIMIZERS)
        validation.one_of("mixed_precision", self.mixed_precision, precision.MIXED_PRECISION)
        if self.dataset in data_lib.DATASETS and self.num_train_examples() < self.batch_size:
            raise ValueError(
                f"`batch_size` ({self.batch_size}) exceeds the {self.num_train_examples()} "
                "training examples: an epoch would train no step (the last, smaller batch is "
                f"dropped). Received: batch_size={self.batch_size}, "
                f"max_train_examples={self.max_train_examples}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1). Received: ema_decay={self.ema_decay!r}")
        validation.non_negative("weight_prior_scale", self.weight_prior_scale)
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={self.learning_rate!r}")

    def check_inputs(self):
        """Raises ValueError if a file or workdir this config names does not fit the run.

        `validate` checks the values alone (a config is plain data: no I/O);
        this reads what the config points to, and `run` calls it before it
        writes anything. Entries whose config names such inputs extend it. Here: an
        explicit `data_dir` must hold the dataset (it is used alone), and
        strategy="multi_worker" needs a valid `TF_CONFIG`.
        """
        if self.strategy == "multi_worker":
            strategies.check_tf_config()
        if self.data_dir:
            data_lib.load_arrays(self.dataset, "train", data_dir=self.data_dir,
                                 download=self.download)

    def added_fields(self):
        """{field: value} of fields added after workdirs were written without them: an
        older config.json that lacks one resumes as if it held this value. An entry
        whose Config adds a field later extends this."""
        return {"optimizer": "adam", "ema_decay": 0.0, "weight_prior_scale": 0.0,
                "export_versions_to_keep": 3, "export_log_prob_samples": 100,
                "mixed_precision": "none"}

    def to_json(self):
        """The fields as JSON values, and "entry": the module that defines this config
        class (e.g. "zoo.vae"), from which `from_json` tools rebuild it."""
        return {"entry": _module_name(type(self)),
                **{f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    @classmethod
    def from_json(cls, values):
        """This config class from a `to_json()` dict (a workdir's config.json).

        Fields an older config.json lacks take their `added_fields()` value;
        lists become tuples where the field is a tuple.

        Raises:
          ValueError: a key that is not a field of this class.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k != "entry"}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"{cls.__module__}.{cls.__name__} has no field(s) {unknown}.")
        defaults = cls().added_fields()
        values = {**{k: v for k, v in defaults.items() if k in fields}, **values}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def held_out_dataset(self, split, batch_size=None, max_examples=None):
        """The held-out `split` ("validation" or "test") as this run evaluates it.

        Binarized runs see their held-out images binarized once with a fixed
        seed (`EVAL_BINARIZE_SEED`); entries that transform the images (M1
        features for M2) override this, so every tool that reads a workdir
        evaluates the data the model saw.

        Args:
          split: "validation" or "test".
          batch_size: examples per batch (None: the config's).
          max_examples: the first N examples, 0 for all (None: `max_eval_examples`).
        """
        max_examples = self.max_eval_examples if max_examples is None else max_examples
        return data_lib.make_dataset(
            self.dataset, split, self.batch_size if batch_size is None else batch_size,
            binarize="none" if self.binarize == "none" else "static", seed=EVAL_BINARIZE_SEED,
            max_examples=max_examples or None, data_dir=self.data_dir or None,
            download=self.download)

    def datasets(self):
        """Returns the (train, validation, test) `tf.data` pipelines of this run.

        Batches are dicts {"image": [B, H, W, C], "label": [B]}; the training
        pipeline reshuffles itself on every iteration (`train_dataset(None)`).
        """
        return (self.train_dataset(), self.held_out_dataset("validation"),
                self.held_out_dataset("test"))

    def num_train_examples(self):
        """N: the training examples an epoch covers (the split, or `max_train_examples`)."""
        n = data_lib.info(self.dataset).splits["train"]
        return min(n, self.max_train_examples) if self.max_train_examples else n

    def train_dataset(self, epoch=None):
        """The training pipeline of epoch `epoch` (>= 0): its order and dynamic
        binarization are a function of (seed, epoch) alone, so a resumed run sees
        the data an uninterrupted one does; None: reshuffled on every iteration.

        Batches carry each example's row ("index") when the model keeps
        per-example state (`needs_example_index`). Entries whose model needs
        other batches (the labelled and unlabelled streams of semi-supervised
        training) override this method.
        """
        return data_lib.make_dataset(
            self.dataset, "train", self.batch_size, binarize=self.binarize, seed=self.seed,
            drop_remainder=True, max_examples=self.max_train_examples or None,
            data_dir=self.data_dir or None, download=self.download, epoch=epoch,
            with_index=self.needs_example_index())

    def needs_example_index(self):
        """Whether training batches carry "index" (the non-amortized baselines'
        per-example state, `tfvae.models.nonamortized`)."""
        return False

    def dataset_info(self):
        """The `tfvae.data.datasets.DatasetInfo` of the data the model sees (overridden
        where an entry transforms the images, e.g. M1 features for M2)."""
        return data_lib.info(self.dataset)


def _module_name(cls):
    """The importable name of the module defining `cls` ("zoo.vae" also when that module
    runs as `python -m zoo.vae`, where it is "__main__")."""
    name = cls.__module__
    if name == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        name = spec.name if spec is not None else name
    return name


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def strict_json(obj):
    """`obj` with every non-finite float replaced by None (JSON has no NaN or inf)."""
    if isinstance(obj, dict):
        return {key: strict_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(value) for value in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json_atomic(path, obj):
    """Writes JSON to `path` through a temporary file and a rename (no torn files)."""
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
        json.dump(strict_json(obj), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")
    os.replace(f.name, path)


def check_resumable(config_json, path, added_fields=None):
    """Raises ValueError if the workdir's config.json describes another experiment.

    Args:
      config_json: the new run's `to_json()`.
      path: the workdir's config.json.
      added_fields: {field: the value an older config.json without it implies}
        (the config's `added_fields()`).
    """
    if not os.path.exists(path):
        return
    added_fields = added_fields or {}
    with open(path, encoding="utf-8") as f:
        try:
            old = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: "
                             f"{e.msg}); fix it, or use a new --workdir.") from None
    changed = sorted(k for k in set(old) | set(config_json)
                     if k not in RESUMABLE_KEYS
                     and old.get(k, added_fields.get(k)) != config_json.get(k))
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {config_json.get(k)!r}" for k in changed)
        raise ValueError(
            f"The workdir holds a run with a different config ({details}); resuming it would "
            f"mix two experiments. Use a new --workdir. Config file: {path}")


def make_optimizer(config):
    """The Keras optimizer of `config` (Adam or Adamax, optionally with EMA weights;
    float16 training wraps it in a dynamic `LossScaleOptimizer`)."""
    cls = keras.optimizers.Adamax if config.optimizer == "adamax" else keras.optimizers.Adam
    if config.ema_decay:
        optimizer = cls(config.learning_rate, use_ema=True, ema_momentum=config.ema_decay)
    else:
        optimizer = cls(config.learning_rate)
    if config.mixed_precision == "float16":
        # float16's smallest normal number is 6e-5: small gradients would underflow to 0
        # unless the loss is scaled up for the backward pass (and the gradients down).
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def warn_about_precision(config, jit_compile):
    """Logs `precision.hardware_warnings` for `config.mixed_precision` on this machine."""
    accelerator = bool(tf.config.list_logical_devices("GPU")
                       or tf.config.list_logical_devices("TPU"))
    for message in precision.hardware_warnings(
            config.mixed_precision, accelerator=accelerator, jit_compile=jit_compile,
            flags=precision.cpu_flags()):
        logging.warning(message)


def build_compiled(config, build_model, info, images, strategy):
    """Builds the entry's model on `images` [n, H, W, C] and compiles it as `run` does."""
    steps_per_execution = config.steps_per_execution
    if strategy.num_replicas_in_sync > 1 and steps_per_execution > 1:
        # Measured with Keras 3 on TF 2.21: the multi-step loop under a multi-replica
        # strategy fails at its first step ("You must feed a value for placeholder
        # tensor ... while/cond/Placeholder"); one step per call trains.
        logging.warning("steps_per_execution=%d is not supported with %d replicas; using 1.",
                        steps_per_execution, strategy.num_replicas_in_sync)
        steps_per_execution = 1
    jit_compile = config.jit_compile
    if strategy.num_replicas_in_sync > 1 and jit_compile:
        # Measured likewise: XLA under MirroredStrategy reads the seed generator's state
        # "located in device CPU:1 from device CPU:0" and fails; the graph executor trains.
        logging.warning("jit_compile is not supported with %d replicas; training without XLA.",
                        strategy.num_replicas_in_sync)
        jit_compile = False
    warn_about_precision(config, jit_compile)
    with strategy.scope():
        model = build_model(config, info)
        precision.apply(model, config.mixed_precision)       # before the model is built
        if config.weight_prior_scale:
            model.set_weight_prior(config.weight_prior_scale, config.num_train_examples())
        model(images[:1])
        model.compile(optimizer=make_optimizer(config),
                      jit_compile=jit_compile, steps_per_execution=steps_per_execution)
        if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
            # Its dynamic scale must be a variable when the step is traced (unbuilt, the
            # traced step would keep the initial scale as a constant).
            model.optimizer.build(model.trainable_variables)
    return model


def run(config, build_model, workdir):
    """Trains, evaluates and exports one zoo entry in `workdir`.

    Args:
      config: a `TrainConfig` (subclass) instance.
      build_model: callable(config, dataset_info) -> an uncompiled VAE.
      workdir: output folder: config.json, checkpoints/, tensorboard/,
        model.keras, export/<version>/ (the SavedModel), metrics.json.

    Returns:
      The metrics dict written to `workdir/metrics.json`.
    """
    # Everything is checked, and the model built, before anything is written: a value
    # only the model's constructor refuses must not leave a config.json behind.
    config.check_inputs()
    # A multi-worker strategy configures collective ops, which must precede every
    # other TensorFlow op of the process (check_inputs runs none).
    strategy = strategies.make_strategy(config.strategy, config.tpu)
    chief = strategies.is_chief(strategy)
    logging.info("Training with %s.", strategies.describe(strategy))
    config_path = os.path.join(workdir, "config.json")
    check_resumable(config.to_json(), config_path, config.added_fields())
    keras.utils.set_random_seed(config.seed)

    info = config.dataset_info()
    val_ds, test_ds = config.held_out_dataset("validation"), config.held_out_dataset("test")
    first_batch = next(iter(val_ds))
    first = first_batch["image"]
    model = build_compiled(config, build_model, info, first, strategy)
    os.makedirs(workdir, exist_ok=True)
    if chief:
        write_json_atomic(config_path, config.to_json())

    # A non-chief worker saves to a folder of its own and restores from the chief's.
    private = strategies.worker_folder(workdir, strategy)
    checkpoint = callbacks_lib.ResumableCheckpoint(
        os.path.join(workdir, "checkpoints"), monitor="val_elbo", mode="max",
        patience=config.patience,
        write_directory=os.path.join(private, "checkpoints") if private else None)
    with strategy.scope():      # the optimizer's slots are built here, on every replica
        initial_epoch = checkpoint.restore(model, barrier=lambda: strategies.barrier(strategy))
    log_dir = os.path.join(workdir, "tensorboard")
    # The divergence guard runs before the checkpoint: a diverged epoch is never saved.
    callbacks = [callbacks_lib.SkippedStepGuard(), checkpoint, callbacks_lib.FirstStepTimer()]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False))
    images = None
    if (chief and config.image_summaries and len(info.image_shape) == 3
            and info.image_shape[-1] in (1, 3)):
        labels = first_batch["label"][:32] if "label" in first_batch else None
        images = callbacks_lib.ImageSummaries(log_dir, first[:32].numpy(), seed=config.seed,
                                              labels=labels)
        callbacks.append(images)
    if checkpoint.stopped_early:
        logging.info("This run stopped early before; not training further.")
    else:
        # One `fit` per epoch on that epoch's data (`train_dataset(epoch)`): the data of
        # epoch e does not depend on how many epochs this process has run.
        for epoch in range(initial_epoch, config.epochs):
            model.fit(config.train_dataset(epoch), validation_data=val_ds, epochs=epoch + 1,
                      initial_epoch=epoch, callbacks=callbacks, shuffle=False,
                      verbose=1 if sys.stdout.isatty() else 2)
            if checkpoint.stopped_early:
                break
    strategies.barrier(strategy)       # the chief has saved the last epoch's checkpoints
    checkpoint.restore_best()
    if config.ema_decay:
        # The Polyak average (kept by the optimizer, restored with it) replaces the weights.
        model.optimizer.finalize_variable_values(model.trainable_variables)

    test = evaluation.evaluate(model, test_ds, num_samples=config.eval_num_samples)
    # Held-out metrics of the model's test_step beyond the likelihood (M2's accuracy).
    extra = model.test_metric_names()
    if extra:
        logs = model.evaluate(test_ds, return_dict=True, verbose=0)
        test.update({name: float(logs[name]) for name in extra})
    metrics = {"dataset": config.dataset, "split": "test",
               "epochs_done": int(checkpoint.epoch.numpy()),
               "best_validation_elbo": float(checkpoint.best.numpy()),
               "stopped_early": checkpoint.stopped_early,
               # What Keras actually compiled (it may turn XLA off by itself).
               "jit_compile": bool(model.jit_compile),
               **{f"test_{k}": v for k, v in test.items()}}
    bad = sorted(k for k, v in metrics.items()
                 if isinstance(v, float) and not math.isfinite(v))
    if bad:
        # Nothing of a failed run is exported as if it were a result.
        raise FloatingPointError(f"The test metrics {bad} are not finite: the model has "
                                 "diverged; nothing was exported. Lower the learning rate or "
                                 "check the data, and train again.")
    if not chief:
        # The chief writes the model, the export and metrics.json; this worker is done.
        shutil.rmtree(private, ignore_errors=True)
        return metrics
    _save_model(model, workdir)
    if config.export:
        _export(model, workdir, config)
    write_json_atomic(os.path.join(workdir, "metrics.json"), metrics)
    callbacks_lib.write_final_summaries(log_dir, config, metrics, model, test_ds)  # TensorBoard
    if images is not None:
        images.set_model(model)
    written = figures.write(workdir, images.grids()[0] if images is not None else {}, log_dir)
    if written:
        logging.info("Figures: %s", ", ".join(written))
    logging.info("Test metrics: %s", json.dumps(metrics))
    return metrics


def _save_model(model, workdir):
    path = os.path.join(workdir, "model.keras")
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def _export(model, workdir, config):
    """Exports `model` as the next version of `workdir/export` (`export_lib.write_version`)."""
    pixels = export_lib.pixel_preprocessing(data_lib.info(config.dataset), config.binarize,
                                            model.image_shape)
    path = export_lib.write_version(
        model, os.path.join(workdir, export_lib.EXPORT_DIR), keep=config.export_versions_to_keep,
        log_prob_samples=config.export_log_prob_samples, pixels=pixels)
    logging.info("Exported SavedModel version %s to %s (serve it with tensorflow_model_server "
                 "--model_base_path=%s; signatures: docs/serving.md)",
                 os.path.basename(path), path, os.path.dirname(path))
