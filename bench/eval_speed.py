"""Evaluation speed: the IS log-likelihood against the network passes it needs.

    python -m bench.eval_speed --workdir=bench_runs/fashion_mnist/vae [--num_samples=1000] \
        [--max_examples=10000] [--out=bench/results/eval_speed.json]

Target (performance issue): the importance-sampled log p(x) with K samples
over the test set (`tfvae.evaluation.estimators.evaluate`, the path `zoo.evaluate` and
the training loop use) takes at most 2x the time of K forward passes of the
encoder and decoder over the same images — the estimator adds no overhead
beyond the network evaluations it needs. The reference runs its K passes in
one compiled loop per batch (z ~ q(z|x), log p(x|z)), so Python overhead does
not inflate it.
"""

import json
import os
import sys
import time

import keras
import tensorflow as tf
from absl import app
from absl import flags

import tfvae  # noqa: F401  (registers the model classes)
from bench import timing
from tfvae.data import datasets as data_lib
from tfvae.evaluation import estimators as evaluation
from tfvae.training import train

flags.DEFINE_string("workdir", None, "A trained entry's workdir (config.json, model.keras).")
flags.DEFINE_integer("num_samples", 1000, "K.")
flags.DEFINE_integer("max_examples", 10000, "Test images evaluated.")
flags.DEFINE_integer("batch_size", 100, "Images per batch (zoo.evaluate's default).")
flags.DEFINE_integer("chunk_size", 100, "Importance samples per chunk.")
flags.DEFINE_string("out", "", "Merge the result into this JSON file (keyed by entry).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def forward_passes_seconds(model, dataset, passes, max_examples):
    """Seconds for `passes` encoder+decoder passes over each batch (compiled loop)."""

    @tf.function(jit_compile=True)
    def run(x):
        def body(i, total):
            seed = tf.stack([i, 0])
            z = model.encode(x).sample(seed=seed)                     # [batch, d]
            return i + 1, total + tf.reduce_sum(model.decode(z).log_prob(x))
        return tf.while_loop(lambda i, _: i < passes, body, (tf.constant(0), tf.constant(0.0)))[1]

    batches = [b["image"] for b in dataset.take(-(-max_examples // FLAGS.batch_size))]
    run(batches[0]).numpy()                                          # compile
    start = time.perf_counter()
    for x in batches:
        run(x).numpy()
    return time.perf_counter() - start


def main(argv):
    del argv
    with open(os.path.join(FLAGS.workdir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    model = keras.saving.load_model(os.path.join(FLAGS.workdir, "model.keras"))
    dataset = data_lib.make_dataset(
        config["dataset"], "test", FLAGS.batch_size,
        binarize="none" if config["binarize"] == "none" else "static",
        seed=train.EVAL_BINARIZE_SEED, data_dir=config["data_dir"] or None)
    # Warm-up: trace and compile the estimator once (as a second evaluation would).
    evaluation.evaluate(model, dataset, FLAGS.num_samples, FLAGS.chunk_size,
                        max_examples=FLAGS.batch_size)
    start = time.perf_counter()
    result = evaluation.evaluate(model, dataset, FLAGS.num_samples, FLAGS.chunk_size,
                                 max_examples=FLAGS.max_examples)
    estimator = time.perf_counter() - start
    reference = forward_passes_seconds(model, dataset, FLAGS.num_samples, FLAGS.max_examples)
    out = {"workdir": FLAGS.workdir, "entry": config.get("entry", os.path.basename(
               os.path.normpath(FLAGS.workdir))),
           "n": result["n"], "num_samples": FLAGS.num_samples, "chunk_size": FLAGS.chunk_size,
           "log_likelihood": result["log_likelihood"], "is_seconds": estimator,
           "forward_passes_seconds": reference, "ratio": estimator / reference,
           "target_ratio": 2.0, "met": estimator <= 2.0 * reference,
           "command": " ".join(["python", "-m", "bench.eval_speed"] + sys.argv[1:])}
    sys.stdout.write(json.dumps(out) + "\n")
    if FLAGS.out:
        timing.merge_json(FLAGS.out, {out["entry"]: out})


if __name__ == "__main__":
    app.run(main)
