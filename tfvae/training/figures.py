"""PNG figures of a finished run, for users who do not open TensorBoard.

`write` puts into `WORKDIR/figures/`:

- `prior_samples.png`, `reconstructions.png` (odd rows held-out data, the
  row below each its reconstruction), `latent_traversal.png`: the grids the
  `ImageSummaries` callback writes to TensorBoard, of the final (best, or
  EMA) model, encoded by TensorFlow (no plotting library needed);
- `training_curves.png`: every epoch scalar Keras's TensorBoard callback
  logged for both the "train" and "validation" runs (loss, ELBO, rate,
  distortion, ...), one panel each, read back from the event files (all of
  a resumed run's files, the last value per epoch); drawn with matplotlib,
  skipped with a log line where it is not installed.
"""

import glob
import math
import os

from absl import logging
import numpy as np
import tensorflow as tf

FIGURES_DIR = "figures"
_RUNS = ("train", "validation")


def write_grids(directory, grids):
    """Writes each grid as `directory/<name>.png`; returns the paths.

    Args:
      directory: the output folder (created).
      grids: {name: (grid [1, H, W, C] with values in [0, 1], description)}.
    """
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, (grid, _) in sorted(grids.items()):
        pixels = np.round(np.clip(np.asarray(grid[0], np.float64), 0.0, 1.0) * 255)
        path = os.path.join(directory, f"{name}.png")
        tf.io.write_file(path, tf.io.encode_png(tf.constant(pixels.astype(np.uint8))))
        paths.append(path)
    return paths


def epoch_scalars(log_dir):
    """{run: {tag: ([epochs], [values])}} of the epoch scalars in `log_dir/<run>`.

    Reads every event file of each run (a resumed run appends new ones); an
    epoch logged twice keeps its last value.
    """
    scalars = {}
    for run in _RUNS:
        values = {}
        for path in sorted(glob.glob(os.path.join(log_dir, run, "events.out.tfevents.*"))):
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if not value.tag.startswith("epoch_"):
                        continue
                    number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                              else value.simple_value)
                    values.setdefault(value.tag[len("epoch_"):], {})[event.step] = number
        scalars[run] = {tag: (sorted(by_step), [by_step[s] for s in sorted(by_step)])
                        for tag, by_step in values.items()}
    return scalars


def write_curves(path, scalars):
    """Plots `epoch_scalars` as one panel per tag; False without matplotlib or scalars."""
    tags = sorted({tag for run in scalars.values() for tag in run})
    if not tags:
        return False
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
    except ImportError:
        logging.info("matplotlib is not installed: no %s (pip install matplotlib).", path)
        return False
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    columns = min(3, len(tags))
    rows = math.ceil(len(tags) / columns)
    figure, axes = pyplot.subplots(rows, columns, figsize=(4 * columns, 3 * rows),
                                   squeeze=False)
    for axis, tag in zip(axes.flat, tags):
        for run, by_tag in scalars.items():
            if tag in by_tag:
                epochs, values = by_tag[tag]
                axis.plot([e + 1 for e in epochs], values, marker=".", label=run)
        axis.set_title(tag)
        axis.set_xlabel("epoch")
        axis.legend()
    for axis in list(axes.flat)[len(tags):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    pyplot.close(figure)
    return True


def write(workdir, grids, log_dir):
    """Writes a finished run's figures into `workdir/figures/` (see the module docstring).

    Args:
      workdir: the run's folder.
      grids: the image grids (`ImageSummaries.grids`), or {} for data without images.
      log_dir: the run's TensorBoard folder (its "train" and "validation" runs).

    Returns:
      The paths written.
    """
    directory = os.path.join(workdir, FIGURES_DIR)
    paths = write_grids(directory, grids) if grids else []
    curves = os.path.join(directory, "training_curves.png")
    os.makedirs(directory, exist_ok=True)
    if write_curves(curves, epoch_scalars(log_dir)):
        paths.append(curves)
    return paths
