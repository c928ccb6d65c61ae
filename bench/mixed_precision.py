"""Mixed precision against float32: the quality and the speed of `vae` on Fashion-MNIST.

    python -m bench.mixed_precision [--epochs=10] [--num_samples=1000] [--json] [--out=FILE]

Quality: the `vae` entry (reference MLP, batch 128, Adam 1e-3) trains through the
training loop (`tfvae.training.train.run`, dynamically binarized Fashion-MNIST from
`--data_dir`, offline) for `--epochs` epochs once per value of `--precisions` (default
float32 = "none" and "bfloat16"), seed 0, without XLA unless `--jit_compile`; the
report has the test ELBO and the importance-sampled test log p(x) with K =
`--num_samples`, each precision's model evaluated in its own precision, and the
differences to float32.

Speed: training examples/s of every precision with and without XLA, at each of
`--speed_batch_sizes`, on `--steps` cached batches of the loop's pipeline, compiled as
the loop does (`train.build_compiled`); the epochs of all variants alternate, `--repeats`
times, and the best of each is reported (other jobs on the machine slow some epochs).
Also the matmul rates per dtype, with and without XLA, of the reference model's first
layer (128x784x512) and of a 2048^3 product.

The CPU's model and its bfloat16/float16-related features are reported
(`bench.timing.cpu_report`, the record kept beside every speed figure) with whether
bfloat16 is native (`tfvae.nn.precision.native_bfloat16`); where the CPU has no
native bfloat16 the report says that bfloat16 is emulated there, and each speed
variant carries the training loop's warnings for it
(`tfvae.nn.precision.hardware_warnings`).
"""

import contextlib
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

import keras
import tensorflow as tf

from bench import timing
from tfvae.data import datasets as data_lib
from tfvae.nn import precision
from tfvae.training import train
from zoo import vae

flags.DEFINE_integer("epochs", 10, "Training epochs of each quality run.")
flags.DEFINE_integer("num_samples", 1000, "K of the test IS log p(x).")
flags.DEFINE_integer("max_train_examples", 0, "Train on the first N images (0: all 50 000).")
flags.DEFINE_integer("max_eval_examples", 0,
                     "Validate and test on the first N images (0: all 10 000).")
flags.DEFINE_list("precisions", ["none", "bfloat16"],
                  "Values of --mixed_precision to compare (the first is the reference).")
flags.DEFINE_bool("jit_compile", False, "XLA in the quality runs' training (the speed is "
                  "measured with and without).")
flags.DEFINE_bool("quality", True, "Run the quality runs (false: speed only).")
flags.DEFINE_integer("steps", 200, "Timed training steps per speed epoch.")
flags.DEFINE_integer("repeats", 3, "Timed epochs per variant (the best is reported).")
flags.DEFINE_list("speed_batch_sizes", ["128"], "Batch sizes of the speed variants (the "
                  "quality runs use the reference 128).")
flags.DEFINE_string("data_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST's files.")
flags.DEFINE_string("workdir", "", "Folder of the quality runs (default: a temporary one).")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
flags.DEFINE_string("out", "", "Also write the JSON object to this file.")
FLAGS = flags.FLAGS

MATMUL_SHAPES = ((128, 784, 512), (2048, 2048, 2048))


def matmul_gflops(dtype, jit_compile, shape, seconds=1.0):
    """GFLOP/s of TensorFlow's [m, k] x [k, n] product in `dtype` (best of 5 timed loops)."""
    m, k, n = shape
    a = tf.cast(tf.random.normal([m, k]), dtype)
    b = tf.cast(tf.random.normal([k, n]), dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)),
                          jit_compile=jit_compile)
    product().numpy()
    start = time.perf_counter()
    product().numpy()
    calls = max(1, int(seconds / 5 / max(time.perf_counter() - start, 1e-6)))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            result = product()
        result.numpy()
        best = min(best, (time.perf_counter() - start) / calls)
    return 2 * m * k * n / best / 1e9


def config_for(mixed_precision, **changes):
    """The `vae` Config of this benchmark for one precision."""
    return vae.Config(dataset="fashion_mnist", data_dir=FLAGS.data_dir, download=False,
                      epochs=FLAGS.epochs, eval_num_samples=FLAGS.num_samples,
                      max_train_examples=FLAGS.max_train_examples,
                      max_eval_examples=FLAGS.max_eval_examples, jit_compile=FLAGS.jit_compile,
                      export=False, image_summaries=False, mixed_precision=mixed_precision,
                      **changes)


def quality(workdir):
    """{precision: test metrics and run seconds} of one training run per precision."""
    results = {}
    for value in FLAGS.precisions:
        config = config_for(value)
        start = time.perf_counter()
        # The loop's `fit` prints its epochs to stdout: keep stdout for the report.
        with contextlib.redirect_stdout(sys.stderr):
            metrics = train.run(config, vae.build_model, os.path.join(workdir, value))
        results[value] = {
            "run_seconds": time.perf_counter() - start, "epochs_done": metrics["epochs_done"],
            "test_n": metrics["test_n"], "test_elbo": metrics["test_elbo"],
            "test_elbo_stderr": metrics["test_elbo_stderr"],
            "test_log_likelihood": metrics["test_log_likelihood"],
            "test_log_likelihood_stderr": metrics["test_log_likelihood_stderr"],
            "num_importance_samples": metrics["test_num_importance_samples"]}
    reference = results[FLAGS.precisions[0]]
    for value in FLAGS.precisions[1:]:
        for key in ("test_elbo", "test_log_likelihood"):
            results[value][f"{key}_minus_{FLAGS.precisions[0]}"] = (
                results[value][key] - reference[key])
    return results


def speed():
    """{"<precision>/<xla|no_xla>/b<batch>": examples/s (best epoch), all epochs, warnings}."""
    info = data_lib.info("fashion_mnist")
    variants = {}
    for batch_size in FLAGS.speed_batch_sizes:
        for value in FLAGS.precisions:
            for jit_compile in (True, False):
                config = dataclasses.replace(config_for(value), jit_compile=jit_compile,
                                             max_train_examples=0, batch_size=int(batch_size))
                data = config.train_dataset(0).take(FLAGS.steps).cache()
                first = next(iter(config.held_out_dataset("validation")))["image"]
                model = train.build_compiled(config, vae.build_model, info, first,
                                             tf.distribute.get_strategy())
                model.fit(data, epochs=1, verbose=0, shuffle=False)  # trace, compile, cache
                # Fewer than `--steps` batches when an epoch of the data has fewer.
                steps = int(data.reduce(0, lambda count, _: count + 1))
                key = f"{value}/{'xla' if jit_compile else 'no_xla'}/b{batch_size}"
                variants[key] = {"model": model, "data": data, "steps": steps,
                                 "batch_size": int(batch_size),
                                 "epoch_seconds": [], "jit_compile": bool(model.jit_compile),
                                 "warnings": precision.hardware_warnings(
                                     value, accelerator=False, jit_compile=jit_compile,
                                     flags=precision.cpu_flags())}
    for _ in range(FLAGS.repeats):                                  # A/B/C/D alternation
        for variant in variants.values():
            start = time.perf_counter()
            variant["model"].fit(variant["data"], epochs=1, verbose=0, shuffle=False)
            variant["epoch_seconds"].append(time.perf_counter() - start)
    return {key: {"examples_per_sec": v["steps"] * v["batch_size"] / min(v["epoch_seconds"]),
                  "batch_size": v["batch_size"], "steps": v["steps"],
                  "epoch_seconds": v["epoch_seconds"],
                  "jit_compile": v["jit_compile"], "warnings": v["warnings"]}
            for key, v in variants.items()}


def matmuls():
    """{"<m>x<k>x<n>/<dtype>/<xla|no_xla>": GFLOP/s} for `MATMUL_SHAPES`."""
    dtypes = {"none": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}
    return {f"{'x'.join(map(str, shape))}/{dtypes[value].name}/{'xla' if jit else 'no_xla'}":
            matmul_gflops(dtypes[value], jit, shape)
            for shape in MATMUL_SHAPES for value in FLAGS.precisions for jit in (False, True)}


def write_table(report):
    lines = [f"command: {report['command']}",
             f"cpu: {report['cpu']['model']} ({report['cpu']['cores']} cores); features: "
             f"{', '.join(report['cpu']['features'])}"]
    if not report["cpu"]["native_bfloat16"]:
        lines.append("This CPU has no native bfloat16 (no amx_bf16 or avx512_bf16): bfloat16 "
                     "is emulated here and slower than float32.")
    for value, result in report.get("quality", {}).items():
        lines.append(f"{value:>9}: test ELBO {result['test_elbo']:.2f} "
                     f"± {result['test_elbo_stderr']:.2f}, IS log p(x) (K = "
                     f"{result['num_importance_samples']}) {result['test_log_likelihood']:.2f} "
                     f"± {result['test_log_likelihood_stderr']:.2f} on {result['test_n']} "
                     f"test images; {result['run_seconds']:.0f} s")
    for key, result in report["speed"].items():
        lines.append(f"{key:>21}: {result['examples_per_sec']:.0f} examples/s")
    for key, rate in report["matmul_gflops"].items():
        lines.append(f"{key:>30}: {rate:.0f} GFLOP/s")
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    for value in FLAGS.precisions:
        precision.policy(value)                               # refuses an unknown value
    report = {"command": " ".join(["python", "-m", "bench.mixed_precision"] + sys.argv[1:]),
              "date": datetime.date.today().isoformat(),
              "cpu": {**timing.cpu_report(),
                      "native_bfloat16": precision.native_bfloat16(precision.cpu_flags())},
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "intra_op_threads": timing.intra_op_threads(),
              "settings": {"epochs": FLAGS.epochs, "num_samples": FLAGS.num_samples,
                           "max_train_examples": FLAGS.max_train_examples,
                           "max_eval_examples": FLAGS.max_eval_examples,
                           "quality_jit_compile": FLAGS.jit_compile,
                           "speed_steps": FLAGS.steps, "speed_repeats": FLAGS.repeats,
                           "speed_batch_sizes": [int(b) for b in FLAGS.speed_batch_sizes]}}
    if FLAGS.quality:
        if FLAGS.workdir:
            report["quality"] = quality(FLAGS.workdir)
        else:
            with tempfile.TemporaryDirectory() as workdir:
                report["quality"] = quality(workdir)
    report["speed"] = speed()
    report["matmul_gflops"] = matmuls()
    if FLAGS.out:
        train.write_json_atomic(FLAGS.out, report)
    if FLAGS.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        write_table(report)


if __name__ == "__main__":
    app.run(main)
