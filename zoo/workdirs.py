"""What a finished zoo run left in its workdir, read back (no flags: safe to import anywhere)."""

import dataclasses
import json
import os

from absl import logging


def read_config(workdir, argument="workdir"):
    """The config dict a run wrote to `workdir/config.json`.

    Raises:
      ValueError: the workdir has no config.json, or it is not valid JSON
        (the error names `argument`, the file and the line).
    """
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise ValueError(f"No config.json in the workdir; train an entry there first. "
                         f"Received: {argument}={workdir!r}")
    with open(config_path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{config_path} is not valid JSON (line {e.lineno}, column "
                             f"{e.colno}: {e.msg}). Received: {argument}={workdir!r}") from None


def config_class(config_json, path="config.json"):
    """The entry's Config class that wrote `config_json` (a workdir's config.json dict).

    The "entry" key names it (e.g. "zoo.vae"; a `PRESETS` entry also by its
    `preset` field). A config.json written before configs recorded their
    entry is matched by its fields: every registered entry with exactly
    those fields must read held-out data the same way, or it is refused.

    Raises:
      ValueError: no entry, or entries that read held-out data differently.
    """
    import zoo
    from tfvae.training import train

    name = config_json.get("entry", "")
    if name.startswith("zoo.") and name[4:] in zoo.ENTRIES:
        module = zoo.load(name[4:])
        presets = vars(module).get("PRESETS") or {}
        return presets.get(config_json.get("preset"), module.Config)
    keys = set(config_json) - {"entry"}
    candidates = []
    for entry in zoo.ENTRIES:
        module = zoo.load(entry)
        for cls in {module.Config, *(vars(module).get("PRESETS") or {}).values()}:
            fields = {f.name for f in dataclasses.fields(cls)}
            if keys <= fields and fields - keys <= set(cls().added_fields()):
                candidates.append(cls)
    readers = {cls.held_out_dataset for cls in candidates}
    if len(readers) == 1:
        return candidates[0]
    if not candidates:
        # An entry outside the registry (a notebook's, a test's): the standard held-out data.
        logging.warning("%s names no registered zoo entry (%s): reading its held-out data as "
                        "TrainConfig does.", path, name or "no entry key")
        return train.TrainConfig
    raise ValueError(f"{path} does not say which entry wrote it ({name or 'no entry key'}) and "
                     f"its fields match {len(candidates)} entries that read held-out data "
                     "differently; add \"entry\": \"zoo.<name>\" to it.")


def workdir_dataset(workdir, split="test", batch_size=100, data_dir=""):
    """(config dict, held-out dataset) of a trained workdir, as its run evaluated it.

    The entry's own `held_out_dataset` makes it (a fixed binarization for
    binarized runs; M1 features for an M1+M2 run), from the entry's Config
    rebuilt from config.json.

    Raises:
      ValueError: the workdir has no (valid) config.json, or it names no entry.
    """
    config_json = read_config(workdir)
    cls = config_class(config_json, os.path.join(workdir, "config.json"))
    fields = {f.name for f in dataclasses.fields(cls)}
    config = cls.from_json({k: v for k, v in config_json.items() if k in fields})
    if data_dir:
        config = dataclasses.replace(config, data_dir=data_dir)
    return config_json, config.held_out_dataset(split, batch_size, max_examples=0)


def load_model(path, argument="workdir"):
    """The Keras model of a `.keras` file a run wrote, with a clear error for a damaged one.

    Raises:
      ValueError: the file is missing, or corrupt or truncated (not a whole
        `.keras` zip archive, or one Keras cannot read), or it holds Python code
        (a `Lambda` layer) that Keras's safe mode refuses; the error names the
        file and `argument`.
    """
    import zipfile

    import keras
    import tfvae  # noqa: F401  (registers the model classes with Keras)

    if not os.path.exists(path):
        raise ValueError(f"No {os.path.basename(path)} in the workdir (training has not "
                         f"finished). Received: {argument}={os.path.dirname(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is corrupt or truncated (not a .keras zip archive); "
                         f"train again or restore it. Received: {argument}="
                         f"{os.path.dirname(path)!r}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        damaged = str(e)
    if damaged:
        raise ValueError(f"{path} is corrupt or truncated ({damaged} does not read back); "
                         f"train again or restore it. Received: {argument}="
                         f"{os.path.dirname(path)!r}")
    try:
        # Keras's safe mode (the default): a file with Python code (a `Lambda` layer's
        # function) is refused instead of run.
        return keras.saving.load_model(path, safe_mode=True)
    except ValueError as e:
        if "safe_mode" not in str(e):
            raise
        raise ValueError(f"{path} holds Python code (a `Lambda` layer's function), which is "
                         "not loaded: a .keras file from elsewhere could run anything. Only "
                         f"load files you trust. Received: {argument}="
                         f"{os.path.dirname(path)!r}. Keras: {e}") from None
