"""Damaged checkpoints, state files, `.keras` files and configs (Reliability issue, item 3).

A three-epoch run keeps `checkpoints/last/ckpt-2` and `ckpt-3`. Each case
damages a copy of that workdir the way a crash or a disk does, then resumes
to epoch 4: restore must fall back to the newest checkpoint that reads back
whole, warn naming the bad file, rebuild an unreadable state file from the
files on disk, and delete nothing that could still be restored.
"""

import logging
import os
import shutil

import pytest

from tfvae.training import train
from zoo import vae as vae_entry
from zoo import workdirs

SMALL = dict(dataset="digits", batch_size=64, latent_size=4, hidden_units=(16,),
             jit_compile=False, export=False, image_summaries=False, eval_num_samples=0,
             max_train_examples=256, max_eval_examples=128)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("damage") / "run")
    train.run(vae_entry.Config(epochs=3, **SMALL), vae_entry.build_model, workdir)
    return workdir


def _last(workdir, name=""):
    return os.path.join(workdir, "checkpoints", "last", name)


def _data_file(workdir, number):
    return next(_last(workdir, f) for f in sorted(os.listdir(_last(workdir)))
                if f.startswith(f"ckpt-{number}.data"))


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


DAMAGE = {
    "truncated_data": lambda w: _truncate(_data_file(w, 3)),
    "truncated_index": lambda w: _truncate(_last(w, "ckpt-3.index")),
    "deleted_shard": lambda w: os.remove(_data_file(w, 3)),
    "flipped_byte": lambda w: _flip_byte(_data_file(w, 3)),
}


def _resume(workdir, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="absl"):
        metrics = train.run(vae_entry.Config(epochs=4, **SMALL), vae_entry.build_model,
                            workdir)
    return metrics, caplog.text


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(trained, damage, tmp_path,
                                                                     caplog):
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    DAMAGE[damage](workdir)
    metrics, log = _resume(workdir, caplog)
    assert "ckpt-3 is damaged and was skipped" in log
    assert f"Resumed from {_last(workdir, 'ckpt-2')}: 2 epoch(s) done" in log
    assert metrics["epochs_done"] == 4                        # epochs 3 and 4 retrained


def test_an_unreadable_state_file_is_rebuilt_and_nothing_is_deleted(trained, tmp_path, caplog):
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    with open(_last(workdir, "checkpoint"), "w", encoding="utf-8") as f:
        f.write("model_checkpoint_path: \x00\x01 garbage {{{\n")
    os.makedirs(_last(workdir, "ckpt-4_temp"))             # a save killed half-way
    metrics, log = _resume(workdir, caplog)
    assert f"Rebuilding {_last(workdir, 'checkpoint')}" in log
    assert f"Resumed from {_last(workdir, 'ckpt-3')}: 3 epoch(s) done" in log
    assert metrics["epochs_done"] == 4                        # one more epoch, not four
    assert not os.path.exists(_last(workdir, "ckpt-4_temp"))
    assert os.path.exists(_last(workdir, "ckpt-4.index"))


def test_no_readable_checkpoint_is_refused_not_restarted(trained, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    for number in (2, 3):
        _truncate(_last(workdir, f"ckpt-{number}.index"))
    with pytest.raises(ValueError, match="None of the checkpoints in .* can be restored"):
        train.run(vae_entry.Config(epochs=4, **SMALL), vae_entry.build_model, workdir)
    assert os.path.exists(_last(workdir, "ckpt-2.index"))    # nothing deleted


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_keras_file_says_so(trained, tmp_path, damage):
    path = str(tmp_path / "model.keras")
    shutil.copy(os.path.join(trained, "model.keras"), path)
    if damage == "truncated":
        _truncate(path)
    else:
        with open(path, "wb") as f:
            f.write(b"not a zip archive")
    with pytest.raises(ValueError, match="model.keras is corrupt or truncated"):
        workdirs.load_model(path)
