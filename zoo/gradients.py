"""`python -m zoo.gradients --workdir=DIR`: variance of the encoder's ELBO gradient estimators.

Loads a trained entry's `DIR/model.keras` and one minibatch of its dataset
(the split binarized once, as in evaluation) and measures, per encoder
parameter, the variance of the reparameterization (book §2.4), score-function
(REINFORCE, §2.9.1) and baselined score-function gradient estimators of the
minibatch ELBO (`tfvae.evaluation.gradient_variance`). Prints a table, then one JSON line
with the mean per-parameter variances and their ratios to the
reparameterization estimator's.

    python -m zoo.gradients --workdir=bench_runs/fashion_mnist/vae
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS


def check_arguments(split="test", batch_size=100, num_draws=200, baseline_samples=8):
    """Raises ValueError naming the first invalid argument (the flag of the same name)."""
    from tfvae import validation

    validation.one_of("split", split, ("train", "validation", "test"))
    validation.at_least("batch_size", batch_size, 1)
    validation.at_least("num_draws", num_draws, 2)   # a variance needs two draws
    validation.at_least("baseline_samples", baseline_samples, 1)


def measure(workdir, split="test", batch_size=100, num_draws=200, baseline_samples=8, seed=0):
    """Returns the JSON-able result dict for a trained workdir (see module docstring).

    Raises:
      ValueError: an invalid argument (`check_arguments`, before anything is
        loaded), or a workdir without config.json and model.keras.
    """
    check_arguments(split, batch_size, num_draws, baseline_samples)
    import tfvae  # noqa: F401  (registers the model classes with Keras)
    from tfvae.evaluation import gradient_variance as diagnostics
    from zoo import workdirs

    model_path = os.path.join(workdir, "model.keras")
    if not os.path.exists(model_path):
        raise ValueError(f"The workdir needs config.json and model.keras (a finished run). "
                         f"Received: workdir={workdir!r}")
    config, dataset = workdirs.workdir_dataset(workdir, split, batch_size)
    x = next(iter(dataset))["image"]
    model = workdirs.load_model(model_path)
    statistics = diagnostics.gradient_statistics(model, x, num_draws=num_draws, seed=seed,
                                                 baseline_samples=baseline_samples)
    return {"workdir": workdir, "dataset": config["dataset"], "split": split,
            "batch_size": int(x.shape[0]), "num_draws": num_draws,
            "baseline_samples": baseline_samples, **diagnostics.summarize(statistics)}


def table(result):
    """The result as a plain-text table (one row per estimator)."""
    lines = [f"{'estimator':<26} {'mean variance':>14} {'ratio':>9} {'mean grad^2':>12}"]
    for name, row in result["estimators"].items():
        lines.append(f"{name:<26} {row['mean_variance']:>14.4g} {row['variance_ratio']:>9.1f} "
                     f"{row['mean_squared_gradient']:>12.4g}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    try:
        check_arguments(FLAGS.split, FLAGS.batch_size, FLAGS.num_draws, FLAGS.baseline_samples)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    result = measure(FLAGS.workdir, FLAGS.split, FLAGS.batch_size, FLAGS.num_draws,
                     FLAGS.baseline_samples, FLAGS.seed)
    sys.stdout.write(table(result) + "\n" + json.dumps(result) + "\n")


def define_flags():
    """The command's flags, defined only when it runs as a program: the library functions
    above stay importable beside other entry points (zoo.evaluate defines `--workdir` too)."""
    flags.DEFINE_string("workdir", None, "A trained zoo entry's workdir (config.json, model.keras).")
    flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split of the minibatch.")
    flags.DEFINE_integer("batch_size", 100, "Examples in the minibatch (the ELBO is their mean).")
    flags.DEFINE_integer("num_draws", 200, "Independent draws of each estimator.")
    flags.DEFINE_integer("baseline_samples", 8, "Draws of z' averaged into the control variate.")
    flags.DEFINE_integer("seed", 0, "Seed of the estimators' draws.")
    flags.mark_flag_as_required("workdir")


if __name__ == "__main__":
    define_flags()
    app.run(main)
