"""Reading a workdir back: the entry that wrote it, and the held-out data as its run saw it.

`zoo.workdirs` has no entry-specific branch: config.json records the entry
("entry": "zoo.<name>"), and the entry's Config, rebuilt from the file,
makes the held-out split (`TrainConfig.held_out_dataset`; M2 with an M1 maps
it to M1 features). A config.json written before the "entry" key is matched
to the registered entries by its fields.
"""

import json
import os

import numpy as np
import pytest

from tfvae.training import train
from zoo import m2 as m2_entry
from zoo import resnet_vae
from zoo import vae as vae_entry
from zoo import workdirs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "workdir_vae_8f5a3f2")


def _json(config):
    return json.loads(json.dumps(config.to_json()))


def test_config_json_names_its_entry_and_rebuilds_it():
    config = m2_entry.Config(dataset="digits", num_labels=50, latent_size=3)
    values = _json(config)
    assert values["entry"] == "zoo.m2"
    cls = workdirs.config_class(values)
    assert cls is m2_entry.Config
    assert cls.from_json(values) == config
    small = resnet_vae.SmallConfig(num_layers=3, layers_per_resolution=(2, 1))
    assert workdirs.config_class(_json(small)) is resnet_vae.SmallConfig
    assert resnet_vae.SmallConfig.from_json(_json(small)) == small


def test_an_old_config_without_entry_is_matched_by_its_fields():
    with open(os.path.join(FIXTURE, "config.json"), encoding="utf-8") as f:
        old = json.load(f)
    assert "entry" not in old
    # Several entries have the vae's fields; they all read held-out data as TrainConfig does.
    assert workdirs.config_class(old).held_out_dataset is train.TrainConfig.held_out_dataset
    old_m2 = {k: v for k, v in _json(m2_entry.Config(dataset="digits")).items() if k != "entry"}
    assert workdirs.config_class(old_m2) is m2_entry.Config


def test_held_out_data_of_a_workdir_is_the_runs(tmp_path):
    config = vae_entry.Config(dataset="digits", max_eval_examples=50)
    os.makedirs(tmp_path / "run")
    train.write_json_atomic(str(tmp_path / "run" / "config.json"), config.to_json())
    _, dataset = workdirs.workdir_dataset(str(tmp_path / "run"), "test", batch_size=64)
    seen = np.concatenate([b["image"].numpy() for b in dataset])
    expected = np.concatenate([b["image"].numpy() for b in config.held_out_dataset(
        "test", batch_size=64, max_examples=0)])
    np.testing.assert_array_equal(seen, expected)
    assert len(seen) == 300                 # every test example, not max_eval_examples


def test_a_garbled_config_json_names_the_file_and_the_line(tmp_path):
    with open(tmp_path / "config.json", "w", encoding="utf-8") as f:
        f.write('{\n  "dataset": "digits",\n  "epochs": 3,,\n}\n')
    with pytest.raises(ValueError, match=r"config.json is not valid JSON \(line 3"):
        workdirs.read_config(str(tmp_path))
    with pytest.raises(ValueError, match=r"config.json is not valid JSON \(line 3"):
        train.check_resumable(vae_entry.Config().to_json(), str(tmp_path / "config.json"))
