"""Training throughput of a zoo entry, against the CPU's matmul peak.

    python -m bench.throughput --entry=vae [--dataset=fashion_mnist] [--batch_size=128] [--json]

Builds and compiles the entry exactly as the training loop does
(`tfvae.train.build_compiled`: the entry's config, Adam, XLA,
steps_per_execution), feeds it the loop's own `tf.data` pipeline, and times
`fit` epochs after a warm-up epoch (tracing and XLA compilation excluded).
FLOPs count 3x the forward matmul FLOPs per example (forward, and the two
matmuls of the backward pass) of the model's Dense layers; the peak is the
float32 rate TensorFlow reaches on a large square matmul, measured in the
same run.
"""

import json
import sys
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

import zoo
from tfvae import data as data_lib
from tfvae import train

flags.DEFINE_string("entry", "vae", "Zoo entry to measure.")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset (must be available locally).")
flags.DEFINE_integer("batch_size", 128, "Global batch size.")
flags.DEFINE_integer("steps_per_execution", 1, "Train steps per compiled call.")
flags.DEFINE_integer("steps", 400, "Timed steps per epoch.")
flags.DEFINE_integer("repeats", 3, "Timed epochs (the best is reported, and all of them).")
flags.DEFINE_bool("jit_compile", True, "XLA.")
flags.DEFINE_bool("json", False, "Print one JSON line instead of a table.")
FLAGS = flags.FLAGS


def matmul_peak_gflops(n=2048, repeats=10):
    """float32 GFLOP/s of TensorFlow's n x n x n matmul (best of `repeats`)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    matmul().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def forward_matmul_flops(model):
    """2 * (in x out) summed over the model's Dense kernels: FLOPs per example."""
    total = 0
    for weight in model.trainable_weights:
        if weight.path.endswith("kernel") and len(weight.shape) == 2:
            total += 2 * int(np.prod(weight.shape))
        elif weight.path.endswith("kernel"):
            raise ValueError(f"Only Dense kernels are counted; found {weight.path} "
                             f"with shape {weight.shape}.")
    return total


def measure(entry_name, dataset, batch_size, steps_per_execution, steps, repeats, jit_compile):
    """Returns a dict of throughput figures (see module docstring)."""
    entry = zoo.load(entry_name)
    config = entry.Config(dataset=dataset, batch_size=batch_size, jit_compile=jit_compile,
                          steps_per_execution=steps_per_execution)
    train_ds = config.datasets()[0].take(steps).cache()
    first = next(iter(train_ds))["image"]
    model = train.build_compiled(config, entry.build_model, data_lib.info(dataset), first,
                                 tf.distribute.get_strategy())
    model.fit(train_ds, epochs=1, verbose=0, shuffle=False)          # trace + compile
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(train_ds, epochs=1, verbose=0, shuffle=False)
        seconds.append(time.perf_counter() - start)
    examples_per_sec = steps * batch_size / min(seconds)
    flops = 3 * forward_matmul_flops(model)
    peak = matmul_peak_gflops()
    gflops = examples_per_sec * flops / 1e9
    return {"entry": entry_name, "dataset": dataset, "batch_size": batch_size,
            "steps_per_execution": steps_per_execution, "jit_compile": bool(model.jit_compile),
            "steps": steps, "epoch_seconds": seconds, "examples_per_sec": examples_per_sec,
            "flops_per_example": flops, "gflops": gflops, "matmul_peak_gflops": peak,
            "efficiency": gflops / peak,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    result = measure(FLAGS.entry, FLAGS.dataset, FLAGS.batch_size, FLAGS.steps_per_execution,
                     FLAGS.steps, FLAGS.repeats, FLAGS.jit_compile)
    if FLAGS.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    for key in ("entry", "batch_size", "steps_per_execution", "jit_compile",
                "examples_per_sec", "gflops", "matmul_peak_gflops", "efficiency"):
        value = result[key]
        sys.stdout.write(f"{key:>20}: {value:.4g}\n" if isinstance(value, float)
                         else f"{key:>20}: {value}\n")


if __name__ == "__main__":
    app.run(main)
