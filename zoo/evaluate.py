"""`python -m zoo.evaluate --workdir=DIR`: held-out ELBO, IS log-likelihood, bits/dim.

Loads the trained model (`DIR/model.keras`, or with `--saved_model` the
`elbo_seeded` and `log_prob_seeded` signatures of the newest exported
SavedModel version, `DIR/export/<largest version>/`) and the dataset named
in `DIR/config.json`, and prints one JSON line: dataset, split, n, elbo,
log_likelihood (importance sampling, book §2.6, with K =
num_importance_samples; or with `--estimator=ais` annealed importance
sampling, `tfvae.evaluation.ais`, with its chains and steps named),
estimator, likelihood_kind, bits_per_dim where it is defined
(`tfvae.evaluation.estimators`), and their standard errors.

A SavedModel is a program, not data: loading one runs the graph code in it, so
evaluate with `--saved_model` only an export you made or trust (`model.keras`
is loaded in Keras's safe mode, which refuses a planted `Lambda` layer).
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from zoo import workdirs

flags.DEFINE_string("workdir", None, "A zoo entry's workdir (holds config.json and model.keras).")
flags.DEFINE_integer("num_samples", 1000, "K, importance samples per example (0 skips log p(x)).")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate.")
flags.DEFINE_integer("max_examples", 0, "Evaluate only the first N examples (0 = all).")
flags.DEFINE_integer("batch_size", 100, "Examples per evaluation batch.")
flags.DEFINE_integer("chunk_size", 100, "Importance samples per chunk (bounds memory; with "
                     "--saved_model the export's chunk size applies).")
flags.DEFINE_integer("seed", 0, "Seed of the importance samples (or AIS chains).")
flags.DEFINE_enum("estimator", "is", ["is", "ais"],
                  "log p(x) by importance sampling with K = --num_samples (book §2.6), or by "
                  "annealed importance sampling with HMC (--ais_chains, --ais_steps, "
                  "--ais_leapfrog_steps; tfvae/evaluation/ais.py).")
flags.DEFINE_integer("ais_chains", 16, "AIS chains per example (--estimator=ais).")
flags.DEFINE_integer("ais_steps", 500, "AIS intermediate distributions (--estimator=ais).")
flags.DEFINE_integer("ais_leapfrog_steps", 10, "Leapfrog steps per HMC transition "
                     "(--estimator=ais).")
flags.DEFINE_bool("saved_model", False,
                  "Evaluate the newest exported SavedModel version (DIR/export/<largest "
                  "integer>/) instead of model.keras. "
                  "A SavedModel is executable code (its graph runs when it is loaded and "
                  "called): only use this on exports you made or trust.")
flags.DEFINE_string("data_dir", "", "Override the data_dir recorded in config.json.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def _saved_model_functions(path, num_samples):
    """(elbo_fn, log_prob_fn, likelihood_support) from the SavedModel at `path`.

    Its `elbo_seeded` and `log_prob_seeded` signatures (explicit seed and K,
    docs/serving.md) are called with the inputs they declare, by name: `x` (the
    batch's images), `labels` (its labels, for conditional models),
    `num_samples` (K) and `seed`. The support is the export's
    `likelihood_support` collection (None for an export written before it
    existed: then no bits/dim is reported).
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(path)

    def call(name, batch, seed):
        signature = loaded.signatures[name + "_seeded"]
        values = {"x": lambda: batch["image"], "labels": lambda: batch["label"],
                  "num_samples": lambda: num_samples, "seed": lambda: seed}
        inputs = signature.structured_input_signature[1]
        return signature(**{key: tf.cast(values[key](), spec.dtype)
                            for key, spec in inputs.items()})[name]

    support = getattr(loaded, "likelihood_support", None)
    support = support[0].numpy().decode() if support else None
    return (lambda batch, seed: call("elbo", batch, seed),
            lambda batch, seed: call("log_prob", batch, seed), support)


def check_arguments(num_samples=1000, split="test", max_examples=0, batch_size=100,
                    chunk_size=100, estimator="is", ais_chains=16, ais_steps=500,
                    ais_leapfrog_steps=10, use_saved_model=False):
    """Raises ValueError naming the first invalid argument (the flag of the same name)."""
    from tfvae import validation

    validation.at_least("num_samples", num_samples, 0)
    validation.one_of("split", split, ("train", "validation", "test"))
    validation.at_least("max_examples", max_examples, 0)
    validation.at_least("batch_size", batch_size, 1)
    validation.at_least("chunk_size", chunk_size, 1)
    validation.one_of("estimator", estimator, ("is", "ais"))
    if estimator == "ais":
        for name, value in (("ais_chains", ais_chains), ("ais_steps", ais_steps),
                            ("ais_leapfrog_steps", ais_leapfrog_steps)):
            validation.at_least(name, value, 1)
        if use_saved_model:
            raise ValueError("--estimator=ais needs the model's log p(x, z) and its gradient "
                             "(model.keras); a SavedModel has only its signatures. Drop "
                             "--saved_model.")


def evaluate_workdir(workdir, num_samples=1000, split="test", max_examples=0, batch_size=100,
                     chunk_size=100, seed=0, use_saved_model=False, data_dir="", estimator="is",
                     ais_chains=16, ais_steps=500, ais_leapfrog_steps=10):
    """Returns the evaluation dict for a trained workdir (see module docstring).

    With estimator="ais", log_likelihood is the AIS estimate (`ais_chains`
    chains of `ais_steps` HMC transitions per example) and the dict says so
    ("estimator", "ais_chains", "ais_steps", "ais_leapfrog_steps").

    Raises:
      ValueError: an invalid argument (`check_arguments`, before anything is
        loaded), or a workdir without a (readable) config.json or model.
    """
    check_arguments(num_samples, split, max_examples, batch_size, chunk_size, estimator,
                    ais_chains, ais_steps, ais_leapfrog_steps, use_saved_model)
    import tfvae  # noqa: F401  (registers the model classes with Keras)
    from tfvae.evaluation import estimators as evaluation

    config, dataset = workdirs.workdir_dataset(workdir, split, batch_size, data_dir)
    if use_saved_model:
        from tfvae.training import export

        elbo_fn, log_prob_fn, support = _saved_model_functions(
            export.latest_export(workdir), num_samples)
        result = evaluation.evaluate_functions(elbo_fn, log_prob_fn, dataset, num_samples,
                                               seed=seed, max_examples=max_examples or None,
                                               likelihood_support=support)
    elif estimator == "ais":
        from tfvae.evaluation import ais

        model = workdirs.load_model(os.path.join(workdir, "model.keras"))
        ais.check_supported(model)
        result = evaluation.evaluate_functions(
            lambda batch, s: model.elbo(batch, seed=s),
            lambda batch, s: ais.ais_log_prob(model, batch, num_chains=ais_chains,
                                              num_steps=ais_steps,
                                              leapfrog_steps=ais_leapfrog_steps,
                                              seed=s).log_prob,
            dataset, ais_chains, seed=seed, max_examples=max_examples or None,
            likelihood_support=model.likelihood_support)
        result.update(num_importance_samples=None, ais_chains=ais_chains, ais_steps=ais_steps,
                      ais_leapfrog_steps=ais_leapfrog_steps)
    else:
        model = workdirs.load_model(os.path.join(workdir, "model.keras"))
        result = evaluation.evaluate(model, dataset, num_samples=num_samples,
                                     chunk_size=chunk_size, seed=seed,
                                     max_examples=max_examples or None)
    return {"dataset": config["dataset"], "split": split, "estimator": estimator, **result}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    try:
        check_arguments(FLAGS.num_samples, FLAGS.split, FLAGS.max_examples, FLAGS.batch_size,
                        FLAGS.chunk_size, FLAGS.estimator, FLAGS.ais_chains, FLAGS.ais_steps,
                        FLAGS.ais_leapfrog_steps, FLAGS.saved_model)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    result = evaluate_workdir(FLAGS.workdir, FLAGS.num_samples, FLAGS.split, FLAGS.max_examples,
                              FLAGS.batch_size, FLAGS.chunk_size, FLAGS.seed,
                              FLAGS.saved_model, FLAGS.data_dir, FLAGS.estimator,
                              FLAGS.ais_chains, FLAGS.ais_steps, FLAGS.ais_leapfrog_steps)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    app.run(main)
