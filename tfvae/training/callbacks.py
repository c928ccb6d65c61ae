"""Training callbacks: resumable checkpoints with early stopping, TensorBoard
images and histograms, a loud guard for skipped (non-finite) steps, and the
time to the first training step.

`write_final_summaries` (`tfvae.training.summaries.write_final`) writes a
finished run's test metrics and HParams to its TensorBoard directory.
"""

import math
import os
import re
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfvae.training import summaries

write_final_summaries = summaries.write_final


class ResumableCheckpoint(keras.callbacks.Callback):
    """Checkpoint every epoch, resume after a kill, stop early on a held-out metric.

    The model, its optimizer and the loop's own state (epochs done, best
    metric, epochs without improvement) go into one `tf.train.Checkpoint`.
    The model's variables are saved by path (`model_variables`), every one
    of them: TensorFlow's object graph does not see Keras 3 layers held in
    Python lists (hierarchical stacks, flow steps), so `model=` alone missed
    their non-trainable state (weight norm's "initialized" flags, whose loss
    re-ran the data-dependent init on resume) and the "best" checkpoint
    missed their weights.
    `tf.train.CheckpointManager` writes the files first and the index last,
    so a run killed while saving resumes from the previous complete epoch: no
    finished epoch is lost. Early stopping follows the book's A.3: stop when
    the held-out ELBO has not improved for `patience` epochs; the weights of
    the best epoch are kept in a second checkpoint and restored at the end.

    Args:
      directory: where checkpoints live (`DIR/checkpoints`).
      monitor: the logged metric to watch, e.g. "val_elbo".
      mode: "max" (ELBO) or "min" (loss).
      patience: epochs without improvement before stopping; 0 disables.
      max_to_keep: number of epoch checkpoints kept.
      write_directory: where this process saves, if not `directory` (a
        non-chief worker of a multi-worker run: every worker must save, and
        all restore from the chief's `directory`; see `strategies`).
    """

    def __init__(self, directory, monitor="val_elbo", mode="max", patience=0, max_to_keep=2,
                 write_directory=None):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max' or 'min'. Received: mode={mode!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"`patience` must be an integer >= 0. Received: patience={patience!r}")
        self.directory = directory
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.max_to_keep = max_to_keep
        self.write_directory = write_directory
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best = tf.Variable(-math.inf if mode == "max" else math.inf, dtype=tf.float64,
                                trainable=False, name="best")
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="wait")
        self.stopped_early = False
        self._managers = self._writers = None

    def _make_managers(self, model):
        variables = model_variables(model)
        state = tf.train.Checkpoint(model=model, model_variables=variables,
                                    optimizer=model.optimizer, epoch=self.epoch,
                                    best=self.best, wait=self.wait)
        best = tf.train.Checkpoint(model=model, model_variables=variables)

        def managers(directory):
            return (tf.train.CheckpointManager(state, os.path.join(directory, "last"),
                                               max_to_keep=self.max_to_keep),
                    tf.train.CheckpointManager(best, os.path.join(directory, "best"),
                                               max_to_keep=1))

        self._managers = managers(self.directory)
        self._writers = managers(self.write_directory) if self.write_directory else self._managers

    def restore(self, model, barrier=None):
        """Restores the newest checkpoint into the built `model`; returns epochs done.

        The optimizer's slots are created first so they are restored too.

        Args:
          model: the built, compiled model.
          barrier: callable run after this process has cleaned its folders
            and before it reads a checkpoint (a multi-worker run passes
            `strategies.barrier`, so no worker reads a folder the chief is
            still repairing).
        """
        if model.optimizer is None or not model.built:
            raise ValueError("`restore` needs a built and compiled model. "
                             f"Received: built={model.built}, optimizer={model.optimizer}")
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for kind in ("last", "best"):
            if self.write_directory:
                # A non-chief worker leaves the chief's folders to the chief.
                remove_leftover_temp(os.path.join(self.write_directory, kind))
                continue
            folder = os.path.join(self.directory, kind)
            remove_leftover_temp(folder)
            repair_state_file(folder)
        if barrier is not None:
            barrier()
        self._make_managers(model)
        last = restore_newest_readable(self._managers[0])
        if last:
            logging.info("Resumed from %s: %d epoch(s) done, best %s = %s.", last,
                         int(self.epoch.numpy()), self.monitor, float(self.best.numpy()))
        if self.patience and int(self.wait.numpy()) >= self.patience:
            self.stopped_early = True
        return int(self.epoch.numpy())

    def _improved(self, value):
        return value > self.best.numpy() if self.mode == "max" else value < self.best.numpy()

    def on_epoch_end(self, epoch, logs=None):
        if self._managers is None:
            raise RuntimeError("ResumableCheckpoint.restore(model) must run before fit().")
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is not None and not np.isfinite(value):
            # Before anything is saved: the last checkpoint stays the last finite epoch.
            raise FloatingPointError(
                f"Epoch {epoch + 1}: {self.monitor} = {value} (not finite): training has "
                f"diverged. The checkpoint of epoch {int(self.epoch.numpy())} is kept; lower "
                "the learning rate (or set --max_grad_norm) and resume, or use a new --workdir.")
        if value is not None:
            if self._improved(value):
                self.best.assign(value)
                self.wait.assign(0)
                self._writers[1].save(checkpoint_number=epoch + 1)
            else:
                self.wait.assign_add(1)
        self.epoch.assign(epoch + 1)
        self._writers[0].save(checkpoint_number=epoch + 1)
        if self.patience and int(self.wait.numpy()) >= self.patience:
            logging.info("Early stopping after epoch %d: %s has not improved for %d epochs "
                         "(best %.4f).", epoch + 1, self.monitor, self.patience,
                         float(self.best.numpy()))
            self.stopped_early = True
            self.model.stop_training = True

    def restore_best(self):
        """Loads the best epoch's weights (if any) into the model; returns the path."""
        # Read again from disk: a non-chief worker's manager does not see the
        # checkpoints the chief has written (or deleted) since `restore`.
        manager = self._managers[1]
        best = restore_newest_readable(tf.train.CheckpointManager(
            manager.checkpoint, manager.directory, max_to_keep=1))
        if best:
            logging.info("Restored the best weights (%s = %.4f) from %s.", self.monitor,
                         float(self.best.numpy()), best)
        return best


def _checkpoint_files(folder):
    """The checkpoint prefixes in `folder` that have an index file, oldest first."""
    numbered = []
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        match = re.fullmatch(r"ckpt-(\d+)\.index", name)
        if match:
            numbered.append((int(match.group(1)), os.path.join(folder, name[:-len(".index")])))
    return [path for _, path in sorted(numbered)]


def remove_leftover_temp(folder):
    """Deletes the `*_temp` folders a save killed half-way leaves behind (never a checkpoint)."""
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        path = os.path.join(folder, name)
        if name.endswith("_temp") and os.path.isdir(path):
            logging.warning("Removing %s, left by a checkpoint save that did not finish.", path)
            shutil.rmtree(path, ignore_errors=True)


def repair_state_file(folder):
    """Rebuilds `folder/checkpoint` from the checkpoint files on disk if it is unreadable.

    A garbled state file would make the manager see no checkpoint: training
    would start over and delete the older checkpoints as it saves new ones.
    """
    state_path = os.path.join(folder, "checkpoint")
    files = _checkpoint_files(folder)
    if not files:
        return
    try:
        state = tf.train.get_checkpoint_state(folder)
    except (tf.errors.OpError, ValueError, UnicodeDecodeError) as e:
        logging.warning("The checkpoint state file %s is unreadable (%s).", state_path, e)
        state = None
    if state is not None and state.model_checkpoint_path:
        return
    logging.warning("Rebuilding %s from the checkpoint files on disk (newest: %s).",
                    state_path, files[-1])
    tf.compat.v1.train.update_checkpoint_state(
        folder, files[-1], all_model_checkpoint_paths=files,
        all_model_checkpoint_timestamps=[os.path.getmtime(f"{path}.index") for path in files])


def restore_newest_readable(manager):
    """Restores the newest checkpoint of `manager` that reads back whole; returns its path.

    A damaged checkpoint (truncated or missing file, flipped byte) is skipped
    with a warning naming it, and the previous one is tried; none is
    deleted. Returns None when the manager has no checkpoint.

    Raises:
      ValueError: checkpoints exist but none of them can be restored.
    """
    paths = list(reversed(manager.checkpoints))
    for path in paths:
        try:
            _restore(manager.checkpoint, path)
            return path
        except (tf.errors.OpError, ValueError, IndexError, AssertionError) as e:
            logging.warning("The checkpoint %s is damaged and was skipped (%s: %s); trying the "
                            "previous one.", path, type(e).__name__, str(e).splitlines()[0])
    if paths:
        raise ValueError(f"None of the checkpoints in {os.path.dirname(paths[0])} can be "
                         f"restored ({', '.join(os.path.basename(p) for p in paths)}); move "
                         "the folder away to start over, or use a new --workdir.")
    return None


def model_variables(model):
    """{key: variable} for every variable of `model` (trainable or not).

    The key is the variable's path; paths that repeat (e.g. the same layer
    name in several cells) get "#1", "#2", ... in the model's (deterministic)
    variable order.
    """
    variables = {}
    for variable in model.variables:
        key = base = variable.path.replace("/", ".")
        count = 0
        while key in variables:
            count += 1
            key = f"{base}#{count}"
        variables[key] = variable
    return variables


def _restore(checkpoint, path):
    """Restores `path` into `checkpoint`, requiring every model variable when it has them.

    Checkpoints written before variables were saved by path (no
    `model_variables` entry) restore what they hold, with a warning.
    """
    saved = tf.train.list_variables(path)
    status = checkpoint.restore(path)
    if any(name.startswith("model_variables/") for name, _ in saved):
        status.assert_existing_objects_matched()
    else:
        status.expect_partial()
        logging.warning("%s predates per-variable checkpoints: non-trainable state of layers "
                        "held in lists (e.g. weight norm's init flags) was not saved in it.", path)


class SkippedStepGuard(keras.callbacks.Callback):
    """Makes skipped non-finite steps loud: warns, and stops if a whole epoch is lost.

    The model skips a step whose loss or gradient is NaN/inf and counts it in
    the `skipped_steps` metric; this callback reports the count each epoch
    and raises `FloatingPointError` when more than `max_fraction` of an
    epoch's steps were skipped (the run has diverged).
    """

    def __init__(self, max_fraction=0.5):
        super().__init__()
        self.max_fraction = max_fraction
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        skipped = int((logs or {}).get("skipped_steps", 0))
        if not skipped:
            return
        logging.warning("Epoch %d: skipped %d step(s) with a non-finite loss or gradient.",
                        epoch + 1, skipped)
        # `_steps` counts batch-end calls; with steps_per_execution > 1 that
        # undercounts steps, so compare against the larger of the two.
        steps = max(self._steps, skipped)
        if skipped > self.max_fraction * steps:
            raise FloatingPointError(
                f"Epoch {epoch + 1}: {skipped} of {steps} steps had a non-finite loss or "
                "gradient; training has diverged. Lower the learning rate or check the data.")


class FirstStepTimer(keras.callbacks.Callback):
    """Logs when the first compiled training call finishes (start-up cost).

    Start-up — imports, data loading, tracing and XLA compilation — is what a
    user waits for before training moves; this logs it once per process, with
    the wall-clock (unix) time so an outside harness (`bench.startup`) can
    measure from the moment it launched the command.
    """

    def __init__(self):
        super().__init__()
        self._start = time.time()
        self._done = False

    def on_train_batch_end(self, batch, logs=None):
        if self._done:
            return
        self._done = True
        now = time.time()
        logging.info("First training step finished at unix time %.3f, %.2f s after the loop "
                     "started.", now, now - self._start)


image_grid = summaries.image_grid


class ImageSummaries(keras.callbacks.Callback):
    """TensorBoard images and histograms at the end of every epoch.

    Writes a data-vs-reconstruction grid (odd rows data, even rows the
    reconstructions E[x|z = E_q z]), a grid of prior samples E[x|z], z ~ p(z),
    histograms of the posterior means and standard deviations, and, where the
    model defines them (`tfvae.training.summaries`), the KL per latent
    dimension (a histogram, the count of active dimensions, a scalar per
    dimension) and a latent traversal grid (row i: dimension i of the first
    example's posterior mean swept over -3..3). Everything is written at the
    step of Keras's epoch scalars (the 0-based epoch).

    Args:
      log_dir: the TensorBoard directory.
      images: a fixed held-out batch [n, H, W, C] in [0, 1].
      num_samples: prior samples per grid.
      seed: seed of the prior samples (the same z every epoch).
      labels: int labels [n] of `images`, or None: the batch goes to the
        model's `reconstruction_summary` as {"image", "label"}, and a model
        reads what it needs (a conditional VAE its context).
    """

    def __init__(self, log_dir, images, num_samples=64, seed=0, labels=None):
        super().__init__()
        self.images = np.asarray(images, np.float32)
        self.labels = None if labels is None else np.asarray(labels, np.int32)
        self.num_samples = num_samples
        self.seed = seed
        self._writer = tf.summary.create_file_writer(os.path.join(log_dir, "images"))
        self._sample = None

    def _batch(self):
        batch = {"image": tf.constant(self.images)}
        if self.labels is not None:
            batch["label"] = tf.constant(self.labels)
        return batch

    def grids(self, batch=None):
        """The current model's image grids, and its posterior summary of the batch.

        Args:
          batch: the held-out batch as `_batch()` makes it (None: made here).

        Returns:
          ({name: (grid [1, rows * H, columns * W, C] in [0, 1], description)}
          for "prior_samples", and where the model has latents to summarize
          "reconstructions" and "latent_traversal"; the model's
          `reconstruction_summary` of the batch, or None).
        """
        x = self.images
        columns = 8
        if self._sample is None:
            # Traced once: sampling a MAF prior eagerly runs d sequential passes.
            self._sample = tf.function(lambda: self.model.sample(self.num_samples,
                                                                 seed=[self.seed, 0]))
        samples = self._sample().numpy()
        grids = {"prior_samples": (image_grid(samples, columns),
                                   "Decoder means E[x|z] of the same z ~ p(z) every epoch.")}
        batch = self._batch() if batch is None else batch
        summary = self.model.reconstruction_summary(batch)
        if summary is not None:                   # a model with latents to summarize
            recon = summary["mean"].numpy()
            n = (len(x) // columns) * columns
            pairs = np.stack([x[:n].reshape(-1, columns, *x.shape[1:]),
                              recon[:n].reshape(-1, columns, *x.shape[1:])], axis=1)
            grids["reconstructions"] = (
                image_grid(pairs.reshape(-1, *x.shape[1:]), columns),
                "Rows 1, 3, 5, ...: held-out data; the row below each: its reconstruction "
                "E[x|z = E_q z].")
            traversal = summaries.latent_traversal(self.model, batch)
            if traversal is not None:
                width = len(summaries.TRAVERSAL_VALUES)
                grids["latent_traversal"] = (
                    image_grid(traversal, width),
                    summaries.traversal_description(len(traversal) // width))
        return grids, summary

    def on_epoch_end(self, epoch, logs=None):
        batch = self._batch()
        grids, summary = self.grids(batch)
        # The step of Keras's epoch scalars (the 0-based epoch), so images and scalars align.
        with self._writer.as_default(step=epoch):
            for name, (grid, description) in grids.items():
                tf.summary.image(name, grid, description=description)
            if summary is not None:
                tf.summary.histogram("posterior_mean", summary["loc"])
                tf.summary.histogram("posterior_stddev", summary["scale"])
                kl = summaries.kl_per_dimension(self.model, batch, seed=(self.seed, 1))
                if kl is not None:
                    summaries.write_kl_per_dimension(kl)
        self._writer.flush()
