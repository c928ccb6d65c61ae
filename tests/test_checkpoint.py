"""Resuming restores every model variable, also of layers held in lists (hierarchical stacks).

TensorFlow's checkpoint object graph does not see Keras 3 layers kept in
Python lists; `ResumableCheckpoint` therefore saves the variables by path.
Before it did, a resumed `ladder_vae` re-ran weight norm's data-dependent
init (its "initialized" flags were not saved) and lost 4 nats of ELBO, and
the "best" checkpoint missed the stack's weights.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

import zoo
from tfvae.training import callbacks as callbacks_lib
from tfvae.data import datasets as data_lib
from tfvae.training import train


def _config(**changes):
    entry = zoo.load("ladder_vae")
    config = entry.Config(dataset="digits", epochs=2, batch_size=64, latent_sizes=(4, 2),
                          hidden_units=(32, 16), eval_num_samples=0, jit_compile=False,
                          export=False, image_summaries=False, kl_warmup_steps=10)
    return entry, dataclasses.replace(config, **changes)


def _fresh_model(entry, config):
    first = next(iter(config.datasets()[1]))["image"]
    return train.build_compiled(config, entry.build_model, data_lib.info(config.dataset), first,
                                tf.distribute.get_strategy())


def test_resume_restores_every_variable_including_weight_norm_flags(tmp_path):
    entry, config = _config()
    workdir = str(tmp_path)
    train.run(config, entry.build_model, workdir)
    directory = os.path.join(workdir, "checkpoints")
    saved = {name: tf.train.load_variable(os.path.join(directory, "last"), name)
             for name, _ in tf.train.list_variables(os.path.join(directory, "last"))
             if name.startswith("model_variables/")}

    model = _fresh_model(entry, config)
    flags = [v for v in model.variables if v.path.endswith("initialized")]
    assert flags and all(float(v.numpy()) == 0.0 for v in flags)   # not yet initialized
    assert callbacks_lib.ResumableCheckpoint(directory).restore(model) == 2
    variables = callbacks_lib.model_variables(model)
    assert len(saved) == len(variables) == len(model.variables)
    for key, variable in variables.items():
        name = key.replace(".", "..")     # the checkpoint's escaping of "." in names
        np.testing.assert_array_equal(
            variable.numpy(), saved[f"model_variables/{name}/.ATTRIBUTES/VARIABLE_VALUE"], key)
    assert all(float(v.numpy()) == 1.0 for v in flags)

    # The next training step continues from the restored weights (no data-dependent re-init).
    scales = {v.path: v.numpy() for v in model.trainable_variables if v.path.endswith("/g")}
    model.train_on_batch(next(iter(config.datasets()[0]))["image"])
    change = max(float(np.abs(scales[v.path] - v.numpy()).max())
                 for v in model.trainable_variables if v.path in scales)
    assert change < 0.05, change        # one Adam step of lr 2e-3, not a re-initialization


def test_best_checkpoint_holds_every_variable(tmp_path):
    entry, config = _config(epochs=1)
    train.run(config, entry.build_model, str(tmp_path))
    best = os.path.join(str(tmp_path), "checkpoints", "best")
    names = [n for n, _ in tf.train.list_variables(best) if n.startswith("model_variables/")]
    model = _fresh_model(entry, config)
    assert len(names) == len(model.variables)
    checkpoint = callbacks_lib.ResumableCheckpoint(os.path.join(str(tmp_path), "checkpoints"))
    checkpoint.restore(model)
    for variable in model.trainable_variables:
        variable.assign(tf.zeros_like(variable))
    checkpoint.restore_best()
    assert all(np.any(v.numpy() != 0) for v in model.trainable_variables
               if v.path.endswith(("/v", "/kernel")))


def test_model_variables_keys_are_unique_and_stable():
    entry, config = _config()
    a, b = (callbacks_lib.model_variables(_fresh_model(entry, config)) for _ in range(2))
    assert list(a) == list(b) and len(set(a)) == len(a)
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]
