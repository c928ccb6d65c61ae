"""TensorFlow-profiler breakdown of a zoo entry's training step by op type.

    pip install -r bench/requirements-profile.txt      # xprof, to read the trace
    python -m bench.profile --entry=vae --jit_compile=false [--steps=200]

Profiles `fit` over cached batches (after a warm-up epoch) with
`tf.profiler.experimental`, converts the trace with xprof's
`framework_op_stats` tool and prints the self-time share of each TensorFlow op
type (non-idle time summed over threads). With XLA (`--jit_compile=true`) the
whole step is one compiled cluster and the table shows only the host side, so
profile the op mix without XLA. The trace stays in `--logdir` for TensorBoard's
profile tab.
"""

import glob
import json
import os
import sys

import tensorflow as tf
from absl import app
from absl import flags

import zoo
from tfvae.data import datasets as data_lib
from tfvae.training import train

flags.DEFINE_string("entry", "vae", "Zoo entry.")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset (local).")
flags.DEFINE_bool("jit_compile", False, "XLA (hides the op mix inside one cluster).")
flags.DEFINE_integer("steps", 200, "Profiled steps.")
flags.DEFINE_string("logdir", "/tmp/tfvae_profile", "Where the trace is written.")
flags.DEFINE_integer("top", 15, "Op types shown.")
FLAGS = flags.FLAGS


def op_type_shares(xplane_path):
    """{op type: self-time share of the non-idle time} from one .xplane.pb trace."""
    from xprof.convert import raw_to_tool_data  # pylint: disable=import-outside-toplevel
    data, _ = raw_to_tool_data.xspace_to_tool_data([xplane_path], "framework_op_stats", {})
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    kind, self_time = columns.index("type"), columns.index("total_self_time")
    totals = {}
    for row in table["rows"]:
        values = [cell.get("v") if cell else None for cell in row["c"]]
        if values[kind] != "IDLE":
            totals[values[kind]] = totals.get(values[kind], 0.0) + values[self_time]
    busy = sum(totals.values())
    return {k: v / busy for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(argv):
    del argv
    entry = zoo.load(FLAGS.entry)
    config = entry.Config(dataset=FLAGS.dataset, jit_compile=FLAGS.jit_compile)
    dataset = config.datasets()[0].take(FLAGS.steps).cache()
    first = next(iter(dataset))["image"]
    model = train.build_compiled(config, entry.build_model, data_lib.info(FLAGS.dataset), first,
                                 tf.distribute.get_strategy())
    model.fit(dataset, epochs=1, verbose=0)                          # trace, compile, fill cache
    tf.profiler.experimental.start(FLAGS.logdir)
    model.fit(dataset, epochs=1, verbose=0)
    tf.profiler.experimental.stop()
    path = max(glob.glob(os.path.join(FLAGS.logdir, "plugins", "profile", "*", "*.xplane.pb")),
               key=os.path.getmtime)
    shares = op_type_shares(path)
    for name, share in list(shares.items())[:FLAGS.top]:
        sys.stdout.write(f"{name:>28}  {100 * share:5.1f} %\n")
    sys.stdout.write(json.dumps({"entry": FLAGS.entry, "jit_compile": FLAGS.jit_compile,
                                 "trace": path, "shares": shares}) + "\n")


if __name__ == "__main__":
    app.run(main)
