"""Start-up times: command to first training step; SavedModel load to first sample.

    python -m bench.startup [--entry=vae] [--repeats=3] [--out=bench/results/startup.json]

1. Launches `python -m zoo.<entry>` (one epoch on a small subset,
   `steps_per_execution=1`) and measures from the launch to the first finished
   training step, which the loop logs with its wall-clock time
   (`tfvae.training.callbacks.FirstStepTimer`): Python and TensorFlow imports, data
   loading, model building, tracing and XLA compilation.
2. In a fresh process that imports only TensorFlow, times
   `tf.saved_model.load` of that run's export (its newest version,
   `WORKDIR/export/<version>/`) and the first served `sample_seeded` of 16
   images (what a TF Serving-like consumer waits for), and `import tensorflow`
   itself.
Each is repeated and the median reported.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from bench import timing
from tfvae.training import export

flags.DEFINE_string("entry", "vae", "Zoo entry.")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset (local).")
flags.DEFINE_integer("repeats", 3, "Runs of each measurement (median reported).")
flags.DEFINE_string("out", "", "Merge the result into this JSON file (keyed by entry).")
FLAGS = flags.FLAGS

_FIRST_STEP = re.compile(r"First training step finished at unix time ([0-9.]+)")
_SERVE = """
import json, time
t0 = time.perf_counter()
import tensorflow as tf
t1 = time.perf_counter()
m = tf.saved_model.load({path!r})
t2 = time.perf_counter()
images = m.sample_seeded(tf.constant(16), tf.constant([1, 2]))["images"].numpy()
t3 = time.perf_counter()
print(json.dumps(dict(import_seconds=t1 - t0, load_seconds=t2 - t1, first_sample_seconds=t3 - t2,
                      shape=list(images.shape))))
"""


def first_step_seconds(entry, dataset, workdir, export):
    """Seconds from launching the entry's command to its first finished training step."""
    cmd = [sys.executable, "-m", f"zoo.{entry}", f"--workdir={workdir}", f"--dataset={dataset}",
           "--epochs=1", "--max_train_examples=1280", "--max_eval_examples=200",
           "--steps_per_execution=1", "--image_summaries=false", f"--export={str(export).lower()}"]
    start = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    match = _FIRST_STEP.search(result.stderr)
    if not match:
        raise RuntimeError("The run did not log its first training step (FirstStepTimer).")
    return float(match.group(1)) - start, " ".join(["python"] + cmd[1:])


def serve_seconds(saved_model):
    """(import, load, first sample) seconds in a TensorFlow-only process."""
    result = subprocess.run([sys.executable, "-c", _SERVE.format(path=saved_model)],
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(entry, dataset, repeats):
    """Median start-up figures over `repeats` fresh processes."""
    first_steps, serves, command = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            workdir = os.path.join(tmp, f"run{i}")
            seconds, command = first_step_seconds(entry, dataset, workdir, export=(i == 0))
            first_steps.append(seconds)
        for _ in range(repeats):
            serves.append(serve_seconds(export.latest_export(os.path.join(tmp, "run0"))))
    median = lambda key: statistics.median(s[key] for s in serves)  # noqa: E731
    return {"entry": entry, "dataset": dataset, "repeats": repeats,
            "command_to_first_step_seconds": statistics.median(first_steps),
            "command_to_first_step_all": first_steps, "train_command": command,
            "import_tensorflow_seconds": median("import_seconds"),
            "saved_model_load_seconds": median("load_seconds"),
            "first_sample_seconds": median("first_sample_seconds"),
            "load_to_first_sample_seconds": median("load_seconds") + median("first_sample_seconds"),
            "command": " ".join(["python", "-m", "bench.startup"] + sys.argv[1:])}


def main(argv):
    del argv
    result = measure(FLAGS.entry, FLAGS.dataset, FLAGS.repeats)
    sys.stdout.write(json.dumps(result) + "\n")
    if FLAGS.out:
        timing.merge_json(FLAGS.out, {FLAGS.entry: result})


if __name__ == "__main__":
    app.run(main)
