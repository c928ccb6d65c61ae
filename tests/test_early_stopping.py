"""Early stopping through the real training loop: patience, `stopped_early`, best weights kept.

`tfvae.training.train.run` trains a tiny `vae` entry on data built here, whose
validation ELBO rises and then falls by construction: the first epochs train
on images of the validation distribution, the later ones on their negatives
(1 - x), which the model then learns at the validation set's expense. A
callback added to `fit` (the only instrumentation) records each epoch's
validation ELBO and weights, so the test knows which epoch was best without
trusting the checkpoint callback it tests.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo.vae
from tfvae.training import export as export_lib
from tfvae.training import train

IMAGE_SHAPE = (8, 8, 1)
BATCH_SIZE = 32
# Epochs trained on the validation distribution before the training images turn negative.
GOOD_EPOCHS = 3
PATIENCE = 2
EPOCHS = 12


def _images(rng, prototypes, n):
    """n binary images: each pixel of a random prototype flipped with probability 0.1."""
    chosen = prototypes[rng.integers(0, len(prototypes), n)]
    flips = rng.random(chosen.shape) < 0.1
    return np.where(flips, 1.0 - chosen, chosen).astype(np.float32)


def _make_data():
    """(train images [256, 8, 8, 1], validation images [64, 8, 8, 1]) of 4 prototypes."""
    rng = np.random.default_rng(0)
    prototypes = (rng.random((4, *IMAGE_SHAPE)) < 0.5).astype(np.float32)
    return _images(rng, prototypes, 256), _images(rng, prototypes, 64)


@dataclasses.dataclass
class _Config(zoo.vae.Config):
    """The `vae` entry on this file's data: good images first, then their negatives."""

    def train_dataset(self, epoch=None):
        """Epochs 0 .. GOOD_EPOCHS - 1 on the good images, later ones on their negatives
        (the loop asks for one epoch at a time)."""
        train_images, _ = _make_data()
        images = train_images if epoch is not None and epoch < GOOD_EPOCHS else 1.0 - train_images
        return _batches(images)

    def held_out_dataset(self, split, batch_size=None, max_examples=None):
        return _batches(_make_data()[1])


def _batches(images):
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": np.zeros(len(images), np.int64)}).batch(BATCH_SIZE)


def _weights(model):
    """{path: array} of the trainable weights; paths without the model's own name in front
    (the model's name leads them in the training run, not in a reloaded model)."""
    prefix = model.name + "/"
    return {v.path[len(prefix):] if v.path.startswith(prefix) else v.path: v.numpy().copy()
            for v in model.trainable_variables}


class _Recorder(keras.callbacks.Callback):
    """Each epoch's validation ELBO and trainable weights {path: array}, at epoch end."""

    def __init__(self):
        super().__init__()
        self.val_elbo, self.weights = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.val_elbo.append(float(logs["val_elbo"]))
        self.weights.append(_weights(self.model))


def _config():
    return _Config(dataset="digits", binarize="none", epochs=EPOCHS, batch_size=BATCH_SIZE,
                   learning_rate=1e-2, patience=PATIENCE, latent_size=4, hidden_units=(64,),
                   jit_compile=False, steps_per_execution=1, eval_num_samples=0,
                   image_summaries=False, export=True, download=False)


def _run(tmp_path, monkeypatch):
    """Trains through `train.run` with a `_Recorder` added to `fit`; returns (metrics, recorder)."""
    recorder = _Recorder()

    def build_model(config, info):
        model = zoo.vae.build_model(config, info)
        fit = model.fit

        def recording_fit(*args, callbacks=(), **kwargs):
            return fit(*args, callbacks=[*callbacks, recorder], **kwargs)

        monkeypatch.setattr(model, "fit", recording_fit)
        return model

    return train.run(_config(), build_model, str(tmp_path)), recorder


def test_early_stopping_keeps_and_exports_the_best_epoch(tmp_path, monkeypatch):
    metrics, recorder = _run(tmp_path, monkeypatch)
    history = recorder.val_elbo
    best = int(np.argmax(history))
    # The construction works: the validation ELBO peaks in the middle of the run (at the
    # last epoch on good images, or the one after) and then falls by nats, not noise.
    assert 1 <= best < len(history) - 1, history
    assert best + 1 in (GOOD_EPOCHS, GOOD_EPOCHS + 1), history
    assert history[best] > history[0] + 1.0 and history[best] > history[-1] + 1.0, history
    # Patience: training stopped after exactly PATIENCE epochs without improvement.
    assert all(value < history[best] for value in history[best + 1:])
    assert len(history) == best + 1 + PATIENCE < EPOCHS, history
    assert metrics["stopped_early"] is True
    assert metrics["epochs_done"] == len(history)
    assert metrics["best_validation_elbo"] == pytest.approx(history[best], rel=1e-6)
    with open(os.path.join(tmp_path, "metrics.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["stopped_early"] is True and saved["epochs_done"] == len(history)

    # model.keras holds the best epoch's weights, not the last epoch's.
    model = keras.saving.load_model(os.path.join(tmp_path, "model.keras"))
    weights = _weights(model)
    assert sorted(weights) == sorted(recorder.weights[best])
    for path, value in weights.items():
        np.testing.assert_array_equal(value, recorder.weights[best][path], err_msg=path)
    assert any(np.any(value != recorder.weights[-1][path]) for path, value in weights.items())

    # The exported SavedModel computes with the same (best) weights.
    _, val_images = _make_data()
    exported = tf.saved_model.load(export_lib.latest_export(str(tmp_path)))
    encoded = exported.encode(tf.constant(val_images))
    summary = model.posterior_summary(tf.constant(val_images))
    for key in ("loc", "scale"):
        np.testing.assert_allclose(encoded[key].numpy(), summary[key].numpy(), rtol=1e-5,
                                   atol=1e-6)
    z = tf.constant(np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32))
    np.testing.assert_allclose(exported.decode(z)["mean"].numpy(),
                               model.decode(z).mean().numpy(), rtol=1e-5, atol=1e-6)
    # ... which are not the last epoch's: its decoder means differ.
    for variable, path in zip(model.trainable_variables, _weights(model)):
        variable.assign(recorder.weights[-1][path])
    assert np.abs(exported.decode(z)["mean"].numpy() - model.decode(z).mean().numpy()).max() > 1e-3
