"""Kill a training run at random moments, resume it each time, compare with an uninterrupted one.

    python -m bench.faults.kill_resume --kills=20 [--epochs=12] [--seed=0] [--json=FILE]

Trains `zoo.vae` on the offline `digits` data twice from the command line:
once uninterrupted, once under SIGKILL — each kill after the run has saved
one or more further epochs, at a random moment or the moment a checkpoint,
`model.keras` or SavedModel write is in progress (its temporary file or
folder appears) — re-launching the same command after each kill until it
exits 0. Reports the kills that landed, the epochs
lost (finished before a kill but not in the checkpoint afterwards), the
epochs redone, and whether every variable of the final checkpoint and the
test metrics are bit-identical to the uninterrupted run's.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = ["--dataset=digits", "--batch_size=16", "--latent_size=4", "--hidden_units=64",
         "--image_summaries=false", "--eval_num_samples=8", "--jit_compile=false",
         "--steps_per_execution=4"]
WRITES = ("_temp", ".tmp")        # a checkpoint shard being written; model.keras / export


def _command(workdir, epochs):
    return [sys.executable, "-m", "zoo.vae", f"--workdir={workdir}", f"--epochs={epochs}",
            *FLAGS]


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")


def epochs_saved(workdir):
    """The newest epoch in checkpoints/last (0 if none)."""
    folder = os.path.join(workdir, "checkpoints", "last")
    numbers = [int(f[5:-6]) for f in os.listdir(folder) if f.startswith("ckpt-")
               and f.endswith(".index")] if os.path.isdir(folder) else []
    return max(numbers, default=0)


def _writing(workdir):
    for base, dirs, files in os.walk(workdir):
        if any(w in name for name in dirs + files for w in WRITES):
            return True
    return False


def _one_attempt(workdir, epochs, mode, rng):
    """Launches the run and kills it once it has saved one or two further epochs: in
    "random" mode 0-0.25 s later, in "write" mode the moment a checkpoint, model.keras or SavedModel
    write is in progress. Returns True if it was killed (False: it finished first)."""
    target = min(epochs, epochs_saved(workdir) + rng.randint(1, 2))
    process = subprocess.Popen(_command(workdir, epochs), cwd=ROOT, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = None
    while process.poll() is None:
        if deadline is None and epochs_saved(workdir) >= target:
            # An epoch here is about 0.2 s: a kill within the next one, or in its write.
            deadline = time.time() + (rng.uniform(0.0, 0.25) if mode == "random" else 600.0)
        if deadline is not None and (time.time() >= deadline
                                     or (mode == "write" and _writing(workdir))):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    if process.returncode != 0:
        raise RuntimeError(f"the run failed with exit code {process.returncode}")
    return False


def kill_and_resume(workdir, epochs, kills, seed=0):
    """Runs until done under `kills` kill attempts; returns the report dict (no comparison)."""
    rng = random.Random(seed)
    landed = lost = redone = during_training = 0
    modes = ["write" if i % 2 else "random" for i in range(kills)]
    for mode in modes:
        before = epochs_saved(workdir)
        if not _one_attempt(workdir, epochs, mode, rng):
            break                                          # it finished before the kill
        landed += 1
        after = epochs_saved(workdir)
        during_training += after < epochs
        lost += max(0, before - after)
    while True:                                            # the final, uninterrupted launch
        before = epochs_saved(workdir)
        run = subprocess.run(_command(workdir, epochs), cwd=ROOT, env=_env(),
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(run.stderr[-3000:])
        redone += epochs - before if before < epochs else 0
        break
    return {"kill_attempts": kills, "kills_landed": landed,
            "kills_during_training": during_training, "epochs_lost": lost,
            "epochs_trained_after_the_last_kill": redone}


def compare(workdir_a, workdir_b, epochs):
    """(max |difference| over every checkpoint variable, test metrics equal) of two runs."""
    import tensorflow as tf

    a = tf.train.load_checkpoint(os.path.join(workdir_a, "checkpoints", "last", f"ckpt-{epochs}"))
    b = tf.train.load_checkpoint(os.path.join(workdir_b, "checkpoints", "last", f"ckpt-{epochs}"))
    names = sorted(a.get_variable_to_shape_map())
    if names != sorted(b.get_variable_to_shape_map()):
        return float("inf"), False
    worst = 0.0
    for name in names:
        x, y = a.get_tensor(name), b.get_tensor(name)
        if isinstance(x, bytes) or np.asarray(x).dtype.kind not in "fiu":
            worst = max(worst, 0.0 if np.array_equal(x, y) else float("inf"))
        else:
            worst = max(worst, float(np.max(np.abs(np.asarray(x, np.float64) - y), initial=0)))
    metrics = []
    for workdir in (workdir_a, workdir_b):
        with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
            metrics.append({k: v for k, v in json.load(f).items() if k.startswith("test_")})
    return worst, metrics[0] == metrics[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="kill_resume_")
    try:
        reference, killed = os.path.join(root, "reference"), os.path.join(root, "killed")
        subprocess.run(_command(reference, args.epochs), cwd=ROOT, env=_env(), check=True,
                       capture_output=True)
        report = kill_and_resume(killed, args.epochs, args.kills, args.seed)
        worst, same_metrics = compare(reference, killed, args.epochs)
        report.update({"epochs": args.epochs, "max_abs_weight_difference": worst,
                       "weights_identical": worst == 0.0, "test_metrics_identical": same_metrics})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
