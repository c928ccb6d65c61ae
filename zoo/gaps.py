"""`python -m zoo.gaps --workdir=DIR`: the inference gaps of a trained entry (book §2.7).

For the first `--num_examples` held-out examples of a trained workdir:
amortized ELBO, the ELBO of the best posterior of the same family found per
example (`tfvae.evaluation.local_posterior`), log p(x) by AIS and by IS, the
approximation gap log p(x) - ELBO(q*) and the amortization gap
ELBO(q*) - ELBO(q_phi) (Cremer et al. 2018), and the posterior-collapse
report: KL per latent dimension and active units (Burda et al. 2015).

Writes `DIR/gaps.json` (per example and averaged, with standard errors, and
the settings) and, when matplotlib is installed, `DIR/gaps.png`; logs a table.
"""

import json
import math
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from zoo import workdirs

flags.DEFINE_string("workdir", None, "A trained zoo entry's workdir (config.json, model.keras).")
flags.DEFINE_integer("num_examples", 100, "Held-out examples to measure (the first N).")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to measure.")
flags.DEFINE_integer("batch_size", 50, "Examples per batch.")
flags.DEFINE_integer("elbo_samples", 1000, "Draws of z for each ELBO.")
flags.DEFINE_integer("is_samples", 1000, "K of the importance-sampled log p(x).")
flags.DEFINE_integer("ais_chains", 16, "AIS chains per example.")
flags.DEFINE_integer("ais_steps", 500, "AIS intermediate distributions (HMC transitions).")
flags.DEFINE_integer("local_steps", 300, "Adam steps of the per-example posterior.")
flags.DEFINE_float("local_learning_rate", 0.05, "Initial Adam step of the per-example posterior.")
flags.DEFINE_integer("seed", 0, "Seed of every draw.")
flags.DEFINE_string("data_dir", "", "Override the data_dir recorded in config.json.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS

PER_EXAMPLE = ("amortized_elbo", "local_elbo", "log_prob_is", "log_prob_ais",
               "approximation_gap", "amortization_gap")


def check_arguments(num_examples=100, batch_size=50, elbo_samples=1000, is_samples=1000,
                    ais_chains=16, ais_steps=500, local_steps=300, local_learning_rate=0.05):
    """Raises ValueError naming the first invalid argument (the flag of the same name)."""
    from tfvae import validation

    for name, value in (("num_examples", num_examples), ("batch_size", batch_size),
                        ("elbo_samples", elbo_samples), ("is_samples", is_samples),
                        ("ais_chains", ais_chains), ("ais_steps", ais_steps),
                        ("local_steps", local_steps)):
        validation.at_least(name, value, 1)
    if not local_learning_rate > 0:
        raise ValueError("`local_learning_rate` must be > 0. "
                         f"Received: local_learning_rate={local_learning_rate}")


def measure_workdir(workdir, num_examples=100, split="test", batch_size=50, elbo_samples=1000,
                    is_samples=1000, ais_chains=16, ais_steps=500, local_steps=300,
                    local_learning_rate=0.05, seed=0, data_dir=""):
    """The gaps report of a trained workdir (see the module docstring) as a dict."""
    check_arguments(num_examples, batch_size, elbo_samples, is_samples, ais_chains, ais_steps,
                    local_steps, local_learning_rate)
    import numpy as np
    import tensorflow as tf

    import tfvae  # noqa: F401  (registers the model classes with Keras)
    from tfvae.evaluation import gaps
    from tfvae.evaluation import local_posterior
    from tfvae.training import summaries

    model = workdirs.load_model(os.path.join(workdir, "model.keras"))
    local_posterior.check_supported(model)         # before the data is read
    config, dataset = workdirs.workdir_dataset(workdir, split, batch_size, data_dir)
    values = {name: [] for name in PER_EXAMPLE}
    means, kls, acceptance = [], [], []
    done, started = 0, time.monotonic()
    for index, batch in enumerate(dataset):
        if done >= num_examples:
            break
        batch = {k: v[:num_examples - done] for k, v in batch.items()}
        result = gaps.inference_gaps(
            model, batch, elbo_samples=elbo_samples, is_samples=is_samples,
            ais_chains=ais_chains, ais_steps=ais_steps, local_steps=local_steps,
            local_learning_rate=local_learning_rate, seed=(seed, index))
        for name in PER_EXAMPLE:
            values[name].append(result[name])
        acceptance.append(result["ais_acceptance"])
        read = model.read_batch(batch)
        means.append(model.posterior_summary(read.x, read.context)["loc"].numpy())
        kl = summaries.kl_per_dimension(model, batch, seed=tf.constant([seed, index]))
        if kl is not None:
            kls.append(np.asarray(kl) * len(batch["image"]))
        done += len(batch["image"])
        elapsed = time.monotonic() - started
        logging.info("gaps: %d/%d examples, %.0f s, about %.0f s left", done, num_examples,
                     elapsed, elapsed / done * (num_examples - done))
    per_example = {name: np.concatenate(v) for name, v in values.items()}
    variance, active = gaps.active_units(np.concatenate(means))
    report = {
        "dataset": config["dataset"], "split": split, "n": done,
        "settings": {"elbo_samples": elbo_samples, "is_samples": is_samples,
                     "ais_chains": ais_chains, "ais_steps": ais_steps,
                     "local_steps": local_steps, "local_learning_rate": local_learning_rate,
                     "seed": seed},
        "ais_acceptance": float(np.mean(acceptance)),
        "active_units": active, "latent_size": int(variance.size),
        "posterior_mean_variance": variance.tolist(),
        "kl_per_dimension": (np.sum(kls, axis=0) / done).tolist() if kls else None,
        "per_example": {name: v.tolist() for name, v in per_example.items()},
    }
    for name, v in per_example.items():
        report[name] = float(v.mean())
        report[name + "_stderr"] = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None
    return report


def table(report):
    """The report's averages as a text table."""
    lines = [f"{report['n']} {report['split']} examples of {report['dataset']}",
             f"{'':24}{'mean':>12}{'stderr':>10}"]
    for name in PER_EXAMPLE:
        stderr = report[name + "_stderr"]
        lines.append(f"{name:24}{report[name]:12.4f}"
                     f"{stderr if stderr is not None else float('nan'):10.4f}")
    lines.append(f"active units: {report['active_units']} of {report['latent_size']}; "
                 f"AIS acceptance {report['ais_acceptance']:.3f}")
    return "\n".join(lines)


def plot(report, path):
    """Writes the per-example gaps and the KL per dimension as a PNG; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
    per_example = report["per_example"]
    left.scatter(per_example["amortization_gap"], per_example["approximation_gap"], s=8)
    left.set_xlabel("amortization gap ELBO(q*) - ELBO(q_phi) [nats]")
    left.set_ylabel("approximation gap log p(x) - ELBO(q*) [nats]")
    left.set_title("Inference gaps per example (book §2.7)")
    kl = report["kl_per_dimension"]
    variance = report["posterior_mean_variance"]
    right.bar(range(len(variance)), kl if kl is not None else variance)
    right.set_xlabel("latent dimension")
    right.set_ylabel("KL [nats]" if kl is not None else "Cov_x(E[z|x])")
    right.set_title(f"{report['active_units']} of {report['latent_size']} units active")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return True


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    arguments = dict(num_examples=FLAGS.num_examples, batch_size=FLAGS.batch_size,
                     elbo_samples=FLAGS.elbo_samples, is_samples=FLAGS.is_samples,
                     ais_chains=FLAGS.ais_chains, ais_steps=FLAGS.ais_steps,
                     local_steps=FLAGS.local_steps,
                     local_learning_rate=FLAGS.local_learning_rate)
    try:
        check_arguments(**arguments)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    report = measure_workdir(FLAGS.workdir, split=FLAGS.split, seed=FLAGS.seed,
                             data_dir=FLAGS.data_dir, **arguments)
    from tfvae.training import train

    train.write_json_atomic(os.path.join(FLAGS.workdir, "gaps.json"), report)
    if plot(report, os.path.join(FLAGS.workdir, "gaps.png")):
        logging.info("Wrote %s", os.path.join(FLAGS.workdir, "gaps.png"))
    sys.stdout.write(table(report) + "\n")
    sys.stdout.write(json.dumps({k: v for k, v in report.items() if k != "per_example"}) + "\n")


if __name__ == "__main__":
    app.run(main)
