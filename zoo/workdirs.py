"""What a finished zoo run left in its workdir, read back (no flags: safe to import anywhere)."""

import json
import os


def read_config(workdir, argument="workdir"):
    """The config dict a run wrote to `workdir/config.json`.

    Raises:
      ValueError: the workdir has no config.json (the error names `argument`).
    """
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise ValueError(f"No config.json in the workdir; train an entry there first. "
                         f"Received: {argument}={workdir!r}")
    with open(config_path, encoding="utf-8") as f:
        return json.load(f)


def workdir_dataset(workdir, split="test", batch_size=100, data_dir=""):
    """(config dict, held-out dataset) of a trained workdir, as its run evaluated it.

    The images are binarized the way the run's evaluation saw them (a fixed
    binarization for `dynamic`/`static`, none for `none`); an M1+M2 run's
    (`m1_workdir` in its config) are mapped to its M1's features.

    Raises:
      ValueError: the workdir has no config.json.
    """
    from tfvae.data import datasets as data_lib
    from tfvae.training import train

    config = read_config(workdir)
    binarize = "none" if config["binarize"] == "none" else "static"
    dataset = data_lib.make_dataset(
        config["dataset"], split, batch_size, binarize=binarize, seed=train.EVAL_BINARIZE_SEED,
        data_dir=data_dir or config["data_dir"] or None, download=config["download"])
    if config.get("m1_workdir"):
        from zoo import m1_features
        dataset = m1_features.to_features(dataset, m1_features.load_m1(config["m1_workdir"]),
                                          sample=False)
    return config, dataset
