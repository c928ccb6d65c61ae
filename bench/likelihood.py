"""Test ELBO and importance-sampled log-likelihood of zoo entries at equal epochs.

    python -m bench.likelihood --entries=vae,vae_iaf,vae_planar --epochs=10 --num_samples=1000 \
        --out=bench/results/flows.json

Trains each entry with its own command line (`python -m zoo.<entry>`, so an
interrupted benchmark resumes from the entries' checkpoints) on the same
data, then evaluates the test set with `zoo.evaluate` (ELBO, IS log p(x)
with K = num_samples, bits/dim, standard errors). Writes one JSON file with
every row, the commands and the machine; `python -m bench.report` turns the
JSON files into the tables of bench/RESULTS.md.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_list("entries", ["vae"], "Zoo entries to train and evaluate.")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset for every entry.")
flags.DEFINE_integer("epochs", 10, "Training epochs for every entry.")
flags.DEFINE_integer("num_samples", 1000, "K of the IS log-likelihood.")
flags.DEFINE_integer("max_train_examples", 0, "Train on the first N examples (0 = all).")
flags.DEFINE_integer("max_eval_examples", 0, "Evaluate the first N test examples (0 = all).")
flags.DEFINE_list("extra", [], "Extra flags passed to every entry, e.g. --extra=--seed=1.")
flags.DEFINE_string("runs_dir", "bench_runs", "Workdirs go to RUNS_DIR/<dataset>/<entry>.")
flags.DEFINE_string("out", "bench/results/likelihood.json", "Output JSON file.")
FLAGS = flags.FLAGS


def _run(cmd):
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-4000:]}")
    return result.stdout, time.perf_counter() - start


def main(argv):
    del argv
    rows = []
    for entry in FLAGS.entries:
        workdir = os.path.join(FLAGS.runs_dir, FLAGS.dataset, entry)
        train_cmd = [sys.executable, "-m", f"zoo.{entry}", f"--workdir={workdir}",
                     f"--dataset={FLAGS.dataset}", f"--epochs={FLAGS.epochs}",
                     f"--max_train_examples={FLAGS.max_train_examples}", *FLAGS.extra]
        eval_cmd = [sys.executable, "-m", "zoo.evaluate", f"--workdir={workdir}",
                    f"--num_samples={FLAGS.num_samples}",
                    f"--max_examples={FLAGS.max_eval_examples}"]
        _, train_seconds = _run(train_cmd)
        out, eval_seconds = _run(eval_cmd)
        result = json.loads(out.strip().splitlines()[-1])
        with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        rows.append({"entry": entry, "epochs": metrics["epochs_done"], **result,
                     "train_seconds": train_seconds, "eval_seconds": eval_seconds,
                     "train_command": " ".join(["python"] + train_cmd[1:]),
                     "eval_command": " ".join(["python"] + eval_cmd[1:])})
        sys.stdout.write(json.dumps(rows[-1]) + "\n")
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w", encoding="utf-8") as f:
        json.dump({"date": datetime.date.today().isoformat(),
                   "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'CPU'}",
                   "command": " ".join(["python", "-m", "bench.likelihood"] + sys.argv[1:]),
                   "rows": rows}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    app.run(main)
