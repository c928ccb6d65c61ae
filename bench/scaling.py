"""Scaling curves: throughput vs batch size, evaluation time vs K, training time vs flow length.

    python -m bench.scaling [--out_dir=bench/results] [--quick]

1. examples/s of `vae` training against the batch size (32 ... 1024), each
   batch size timed over the same number of examples;
2. seconds (and the process's peak memory) of the importance-sampled log p(x)
   of a trained `vae` against K (1 ... 5000) on a fixed set of test images —
   linear in K with bounded memory (chunks of 100 samples);
3. seconds per training epoch of `vae_iaf` against the number of IAF steps
   (1 ... 8) — linear in the number of steps.
Writes `scaling.json` and three PNG plots to `--out_dir`; each curve is
summarised by the least-squares line through it (slope, intercept, R^2) where
linearity is expected.
"""

import json
import os
import resource
import sys
import time

import keras
import numpy as np
from absl import app
from absl import flags
from absl import logging

import tfvae  # noqa: F401  (registers the model classes)
from bench import timing
from tfvae.data import datasets as data_lib
from tfvae.evaluation import estimators as evaluation
from tfvae.training import train

flags.DEFINE_string("out_dir", "bench/results", "Where scaling.json and the PNGs go.")
flags.DEFINE_string("workdir", "bench_runs/fashion_mnist/vae",
                    "A trained `vae` workdir for the K curve.")
flags.DEFINE_list("batch_sizes", ["32", "64", "128", "256", "512", "1024"], "Batch sizes.")
flags.DEFINE_list("ks", ["1", "10", "100", "1000", "5000"], "Importance-sample counts K.")
flags.DEFINE_list("flow_lengths", ["1", "2", "4", "8"], "IAF steps.")
flags.DEFINE_integer("examples", 25600, "Training examples per timed epoch.")
flags.DEFINE_integer("eval_examples", 500, "Test images for the K curve.")
flags.DEFINE_list("curves", ["k", "batch_size", "flow_length"],
                  "Curves to measure, in this order; the others are kept from an existing "
                  "scaling.json. The K curve goes first: the peak RSS it records is the "
                  "process's, so it must not follow the training curves.")
FLAGS = flags.FLAGS


def linear_fit(x, y):
    """Least-squares y = slope * x + intercept and its R^2."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1.0 - residual.var() / y.var() if y.var() > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2)}


def batch_curve(batch_sizes, examples):
    rows = []
    for batch_size in batch_sizes:
        result = timing.measure("vae", batch_size=batch_size, repeats=2,
                                steps=max(10, examples // batch_size))
        rows.append({k: result[k] for k in ("batch_size", "examples_per_sec", "gflops",
                                            "efficiency", "matmul_peak_gflops")})
        logging.info("batch %d: %.0f examples/s", batch_size, result["examples_per_sec"])
    return {"rows": rows}


def k_curve(workdir, ks, max_examples):
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    dataset = data_lib.make_dataset(config["dataset"], "test", 100, binarize="static",
                                    seed=train.EVAL_BINARIZE_SEED).take(-(-max_examples // 100))
    rows = []
    for k in ks:
        evaluation.evaluate(model, dataset, k, max_examples=100)     # trace + warm-up
        start = time.perf_counter()
        result = evaluation.evaluate(model, dataset, k, max_examples=max_examples)
        seconds = time.perf_counter() - start
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({"k": k, "seconds": seconds, "log_likelihood": result["log_likelihood"],
                     "peak_rss_mib": peak_mib})
        logging.info("K=%d: %.2f s, peak RSS %.0f MiB", k, seconds, peak_mib)
    return {"rows": rows, "n": max_examples,
            "fit_k_ge_100": linear_fit([r["k"] for r in rows if r["k"] >= 100],
                                       [r["seconds"] for r in rows if r["k"] >= 100])}


def flow_curve(lengths, examples):
    rows = []
    for steps in lengths:
        result = timing.measure("vae_iaf", repeats=2, steps=examples // 128,
                                overrides={"num_flows": steps})
        rows.append({"num_flows": steps, "epoch_seconds": min(result["epoch_seconds"]),
                     "examples_per_sec": result["examples_per_sec"],
                     "flops_per_example": result["flops_per_example"]})
        logging.info("IAF %d steps: %.2f s/epoch", steps, rows[-1]["epoch_seconds"])
    return {"rows": rows, "examples": examples,
            "fit": linear_fit(lengths, [r["epoch_seconds"] for r in rows])}


def plot(path, x, y, xlabel, ylabel, logx=False, logy=False):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(x, y, "o-")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    ints = lambda items: [int(v) for v in items]  # noqa: E731
    measure = {"k": lambda: k_curve(FLAGS.workdir, ints(FLAGS.ks), FLAGS.eval_examples),
               "batch_size": lambda: batch_curve(ints(FLAGS.batch_sizes), FLAGS.examples),
               "flow_length": lambda: flow_curve(ints(FLAGS.flow_lengths), FLAGS.examples)}
    unknown = set(FLAGS.curves) - set(measure)
    if unknown:
        raise app.UsageError(f"Unknown curves {sorted(unknown)}; choose from {sorted(measure)}.")
    path = os.path.join(FLAGS.out_dir, "scaling.json")
    result = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    command = " ".join(["python", "-m", "bench.scaling"] + sys.argv[1:])
    for curve in FLAGS.curves:
        result[curve] = {**measure[curve](), "command": command,
                         "date": time.strftime("%Y-%m-%d")}
    missing = set(measure) - set(result)
    if missing:
        raise app.UsageError(f"scaling.json lacks the curves {sorted(missing)}: measure them.")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    train.write_json_atomic(path, result)
    rows = result["batch_size"]["rows"]
    plot(os.path.join(FLAGS.out_dir, "scaling_batch_size.png"), [r["batch_size"] for r in rows],
         [r["examples_per_sec"] for r in rows], "batch size", "examples/s (vae)", logx=True)
    rows = result["k"]["rows"]
    plot(os.path.join(FLAGS.out_dir, "scaling_k.png"), [r["k"] for r in rows],
         [r["seconds"] for r in rows], "K (importance samples)",
         f"seconds for {FLAGS.eval_examples} images", logx=True, logy=True)
    rows = result["flow_length"]["rows"]
    plot(os.path.join(FLAGS.out_dir, "scaling_flow_length.png"), [r["num_flows"] for r in rows],
         [r["epoch_seconds"] for r in rows], "IAF steps",
         f"seconds per {FLAGS.examples} examples")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    app.run(main)
