"""Training throughput of a zoo entry, against the CPU's matmul peak and a peer.

    python -m bench.throughput --entry=vae [--vs-peer] [--json] [--out=bench/results/throughput.json]

Builds and compiles the entry exactly as the training loop does
(`tfvae.training.train.build_compiled`: the entry's config and defaults, Adam, XLA,
`steps_per_execution`), feeds it the loop's own `tf.data` pipeline — cached
batches (`--pipeline=cached`, the model's speed) or the pipeline re-run every
epoch with shuffling and dynamic binarization (`--pipeline=live`, what
training sees) — and times `fit` epochs after a warm-up epoch (tracing and
XLA compilation excluded); the best epoch is reported, all are recorded.

FLOPs per example: 3x the matmul/convolution FLOPs of the traced training
objective (forward; the backward pass costs about two more), counted from
the graph (`bench.flops`), so k importance samples or flow steps count as
what they cost. Peak: the float32 rate TensorFlow reaches on a 2048^3 matmul,
measured in the same run; efficiency = GFLOP/s / peak.

With `--vs-peer`, pythae's VAE (IWAE, VAE_IAF for `iwae`, `vae_iaf`) with
the same architecture, data and batch
(`bench/peers`, its own PyTorch venv, `torch.set_num_threads` = TensorFlow's
intra-op threads) is timed in the same run, alternating epochs A/B.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging

from bench import timing

flags.DEFINE_list("entry", ["vae"], "Zoo entries to measure (comma-separated).")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset (must be available locally).")
flags.DEFINE_integer("batch_size", 128, "Global batch size.")
flags.DEFINE_integer("steps_per_execution", 0, "Train steps per compiled call (0: the loop's default).")
flags.DEFINE_integer("steps", 400, "Timed steps per epoch.")
flags.DEFINE_integer("repeats", 3, "Timed epochs (the best is reported, and all of them).")
flags.DEFINE_bool("jit_compile", True, "XLA.")
flags.DEFINE_bool("vs_peer", False, "Also time pythae's VAE (bench/peers), alternating A/B.")
flags.DEFINE_alias("vs-peer", "vs_peer")
flags.DEFINE_list("extra", [], "Config overrides key=value for every entry, e.g. num_flows=8.")
flags.DEFINE_enum("pipeline", "cached", ["cached", "live"],
                  "Time on cached batches, or re-run the loop's tf.data pipeline every epoch.")
flags.DEFINE_bool("json", False, "Print one JSON line per entry instead of a table.")
flags.DEFINE_string("out", "", "Also merge the results into this JSON file (keyed by entry).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    results = {}
    for name in FLAGS.entry:
        result = timing.measure(name, FLAGS.dataset, FLAGS.batch_size, FLAGS.steps_per_execution,
                         FLAGS.steps, FLAGS.repeats, FLAGS.jit_compile, FLAGS.vs_peer,
                         timing.parse_overrides(FLAGS.extra), FLAGS.pipeline)
        result["command"] = " ".join(["python", "-m", "bench.throughput"] + sys.argv[1:])
        results[name] = result
        if FLAGS.json:
            sys.stdout.write(json.dumps(result) + "\n")
            continue
        for key in ("entry", "batch_size", "steps_per_execution", "jit_compile",
                    "examples_per_sec", "gflops", "matmul_peak_gflops", "efficiency",
                    "roofline_efficiency", "peer_examples_per_sec", "speedup_vs_peer"):
            if key in result:
                value = result[key]
                sys.stdout.write(f"{key:>22}: {value:.4g}\n" if isinstance(value, float)
                                 else f"{key:>22}: {value}\n")
    if FLAGS.out:
        timing.merge_json(FLAGS.out, results)


if __name__ == "__main__":
    app.run(main)
