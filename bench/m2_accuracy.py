"""M2 test accuracy by number of labels (Kingma et al. 2014; book §4.5.1).

    python -m bench.m2_accuracy --labels=100,600,1000,3000 --epochs=10 \
        --out=bench/results/m2_accuracy.json

M1+M2 with a trained M1 (a `zoo.vae` workdir on the same dataset):

    python -m bench.m2_accuracy --m1_workdir=bench_runs/fashion_mnist/m1 \
        --out=bench/results/m1m2_accuracy.json

Trains `zoo.m2` once per labelled-subset size with its own command line (in
RUNS_DIR/<dataset>/m2_<labels> or m1m2_<labels>, so an interrupted benchmark resumes) and
collects `test_accuracy` (q(y|x) on the whole test set) and the test bound
U(x) from each workdir's metrics.json into one JSON file with the commands
(key "runs": not a `bench.likelihood` table, which `bench.report` renders).
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

flags.DEFINE_list("labels", ["100", "600", "1000", "3000"], "Labelled-subset sizes.")
flags.DEFINE_string("dataset", "fashion_mnist", "Labelled dataset.")
flags.DEFINE_integer("epochs", 10, "Training epochs (passes over the unlabelled stream).")
flags.DEFINE_list("extra", [], "Extra flags passed to every run, e.g. --extra=--seed=1.")
flags.DEFINE_string("m1_workdir", "", "A trained M1 (zoo.vae workdir): M1+M2 runs, in "
                    "RUNS_DIR/<dataset>/m1m2_<labels>.")
flags.DEFINE_string("runs_dir", "bench_runs", "Workdirs go to RUNS_DIR/<dataset>/m2_<labels>.")
flags.DEFINE_string("out", "bench/results/m2_accuracy.json", "Output JSON file.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    rows = []
    for labels in FLAGS.labels:
        stem = "m1m2" if FLAGS.m1_workdir else "m2"
        workdir = os.path.join(FLAGS.runs_dir, FLAGS.dataset, f"{stem}_{labels}")
        cmd = [sys.executable, "-m", "zoo.m2", f"--workdir={workdir}",
               f"--dataset={FLAGS.dataset}", f"--num_labels={labels}",
               f"--epochs={FLAGS.epochs}", *FLAGS.extra]
        if FLAGS.m1_workdir:
            cmd.append(f"--m1_workdir={FLAGS.m1_workdir}")
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-4000:]}")
        with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        rows.append({"model": "M1+M2" if FLAGS.m1_workdir else "M2",
                     "num_labels": int(labels), "epochs": metrics["epochs_done"],
                     "dataset": FLAGS.dataset, "test_accuracy": metrics["test_accuracy"],
                     "test_elbo": metrics["test_elbo"], "test_n": metrics["test_n"],
                     "train_seconds": time.perf_counter() - start,
                     "command": " ".join(["python"] + cmd[1:])})
        sys.stdout.write(json.dumps(rows[-1]) + "\n")
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w", encoding="utf-8") as f:
        json.dump({"date": datetime.date.today().isoformat(),
                   "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                              f"{platform.processor() or 'CPU'}",
                   "command": " ".join(["python", "-m", "bench.m2_accuracy"] + sys.argv[1:]),
                   "runs": rows}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    app.run(main)
