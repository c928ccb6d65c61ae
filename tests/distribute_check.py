"""Run as a script by test_distribute.py: two logical CPUs, one SGD step.

Prints a JSON line comparing the update of MirroredStrategy over 2 replicas
with the default strategy's on the same batch, and the NaN-skip under
MirroredStrategy when only one replica sees a NaN.
"""

import json

import numpy as np
import tensorflow as tf

CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from tfvae.data import datasets as data_lib  # noqa: E402
from zoo import vae  # noqa: E402


def one_step(strategy, x):
    """Returns (updates per variable, replicas, skipped steps, logged gradient norm) of one
    SGD step on x."""
    keras.utils.set_random_seed(0)
    config = vae.Config(dataset="digits", latent_size=4, hidden_units=(16, 16))
    with strategy.scope():
        model = vae.build_model(config, data_lib.info("digits"))
        model(x[:1])
        # log sigma = -30: z = mu to float precision, so the loss (analytic KL)
        # is deterministic and the two strategies must give the same update.
        model.latent._head.bias.assign(
            np.concatenate([np.zeros(4), np.full(4, -30.0)]).astype("float32"))
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(len(x)), epochs=1,
                        verbose=0).history
    updates = [v.numpy() - b for v, b in zip(model.trainable_variables, before)]
    return (updates, strategy.num_replicas_in_sync, history["skipped_steps"][0],
            history["grad_norm"][0])


def main():
    x = (np.random.default_rng(0).random((8, 8, 8, 1)) > 0.5).astype("float32")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single, n_single, _, norm_single = one_step(tf.distribute.get_strategy(), x)
    multi, n_multi, _, norm_multi = one_step(mirrored, x)
    bad = x.copy()
    bad[-1, 0, 0, 0] = np.nan          # only the second replica's half has a NaN
    skipped_updates, _, skipped, _ = one_step(mirrored, bad)
    print(json.dumps({
        "replicas": [n_single, n_multi],
        "max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(single, multi)),
        "max_update": max(float(np.abs(a).max()) for a in single),
        "grad_norm": [norm_single, norm_multi],
        "skipped_steps": skipped,
        "max_update_when_skipped": max(float(np.abs(a).max()) for a in skipped_updates),
    }))


if __name__ == "__main__":
    main()
