"""Golden numbers of every zoo entry on one tiny fixed setting (the redesign's safety net).

Each entry trains through `tfvae.train.run` for one epoch on the first 128
Fashion-MNIST training images (batch 32, seed 0, no XLA, so that the numbers
are exact to float rounding) and is evaluated on the first 64 test images:
the final epoch's training loss, the test ELBO and the IS log p(x) with K = 4.
`tests/golden_zoo.json` holds the recorded values; `tests/test_golden.py`
retrains every entry and compares. A deliberate change of the numbers is
recorded anew with

    python -m tests.golden --update

and named, with its reason, in the commit and the issue note (`--update NAME
[NAME ...]` records only the entries named). A new entry's
numbers are added, leaving every other entry's as recorded, with

    python -m tests.golden --add NAME [NAME ...]
"""

import dataclasses
import glob
import json
import os
import sys
import tempfile

import numpy as np

GOLDEN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_zoo.json")
SETTING = dict(dataset="fashion_mnist", epochs=1, batch_size=32, max_train_examples=128,
               max_eval_examples=64, eval_num_samples=4, latent_size=8, hidden_units=(32, 32),
               jit_compile=False, steps_per_execution=1, export=False, image_summaries=False,
               flow_hidden_units=(16, 16), flow_context_size=8, prior_hidden_units=(16, 16),
               num_flows=2)
OVERRIDES = {
    "hvae": dict(latent_sizes=(8, 4), hidden_units=(32, 16)),
    "ladder_vae": dict(latent_sizes=(8, 4), hidden_units=(32, 16), kl_warmup_steps=2),
    "resnet_vae": dict(dataset="image_patches", batch_size=16, max_train_examples=64,
                       max_eval_examples=32, num_layers=2, layers_per_resolution=(1, 1),
                       hidden_channels=8, latent_channels=4, iaf_hidden_units=(16,),
                       context_channels=8, num_components=2, ema_decay=0.5),
    "m2": dict(num_labels=20),
    "iwae": dict(k=2),
    "miwae": dict(k=2, m=2),
    "vamp_vae": dict(num_pseudo_inputs=20),
    "pixel_vae": dict(pixelcnn_filters=8, pixelcnn_layers=2, context_channels=4,
                      decoder_filters=(8, 8), first_kernel_size=5),
    # Fewer held-out HMC chains and transitions (the defaults' 8 x 100 took 60 s here).
    "mcmc_em": dict(eval_chains=4, eval_mcmc_steps=10),
}
FIELDS = ("train_loss", "test_elbo", "test_log_likelihood")


def config_for(name):
    """The entry's Config at the golden setting (only the fields it has)."""
    import zoo
    entry = zoo.load(name)
    fields = {f.name for f in dataclasses.fields(entry.Config)}
    settings = {**SETTING, **OVERRIDES.get(name, {})}
    return entry, entry.Config(**{k: v for k, v in settings.items() if k in fields})


def _last_scalar(pattern, tag):
    import tensorflow as tf
    last = None
    for path in sorted(glob.glob(pattern)):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == tag:
                    last = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") \
                        else float(value.simple_value)
    return last


def measure(name, workdir):
    """Trains entry `name` at the golden setting in `workdir`; returns its FIELDS."""
    from tfvae.training import train
    entry, config = config_for(name)
    metrics = train.run(config, entry.build_model, workdir)
    loss = _last_scalar(os.path.join(workdir, "tensorboard", "train", "*"), "epoch_loss")
    return {"train_loss": loss, "test_elbo": metrics["test_elbo"],
            "test_log_likelihood": metrics["test_log_likelihood"]}


def main(argv):
    import zoo
    if argv[1:] == ["--update"]:
        names, values = zoo.ENTRIES, {}
    elif argv[1:2] == ["--update"]:
        names = argv[2:]
        with open(GOLDEN_PATH, encoding="utf-8") as f:
            values = json.load(f)
        unknown = sorted(set(names) - set(values))
        if unknown:
            sys.exit(f"--update NAME takes recorded entries; not recorded: {unknown}")
    elif argv[1:2] == ["--add"] and argv[2:]:
        names = argv[2:]
        with open(GOLDEN_PATH, encoding="utf-8") as f:
            values = json.load(f)
        known = sorted(set(names) & set(values))
        if known or not set(names) <= set(zoo.ENTRIES):
            sys.exit(f"--add takes new entries of zoo.ENTRIES; recorded already: {known}")
    else:
        sys.exit("usage: python -m tests.golden --update [NAME ...] | --add NAME [NAME ...]")
    for name in names:
        with tempfile.TemporaryDirectory() as workdir:
            values[name] = measure(name, workdir)
        print(name, values[name], flush=True)
    assert all(np.isfinite(v) for row in values.values() for v in row.values())
    with open(GOLDEN_PATH, "w") as f:
        json.dump(values, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv)
