"""`python -m zoo.<entry> --help` lists the entry's own flags, grouped, with help and defaults."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

import zoo
from tfvae.training import train
from zoo import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADERS = ["Required:", "Model:", "Data:", "Training:", "Evaluation:", "Output:"]


def _help(entry, flag="--help", returncode=0):
    out = subprocess.run([sys.executable, "-m", f"zoo.{entry}", flag], cwd=ROOT,
                         capture_output=True, text=True, timeout=180,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == returncode, out.stderr[-2000:]
    return out.stdout


def _flag_blocks(text):
    """{flag name: (its help text, its "default: ..." text)} from the help output:
    "  --name: help" (continued on deeper-indented lines), then "      (default: ...)"."""
    blocks, name, parts, default = {}, None, [], None
    for line in text.splitlines() + [""]:
        start = re.match(r"  --(?:\[no\])?(\w+): (.*)", line)
        if start or not line.startswith("    "):
            if name is not None:
                blocks[name] = (" ".join(parts), default and " ".join(default)[1:-1])
            name, parts, default = (start.group(1), [start.group(2)], None) if start else (
                None, [], None)
        elif name is not None and (default is not None or line.startswith("      (default: ")):
            default = (default or []) + [line.strip()]
        elif name is not None:
            parts.append(line.strip())
    return blocks


def test_every_train_config_field_has_a_group():
    placed = [name for names in common.TRAIN_CONFIG_GROUPS.values() for name in names]
    assert len(placed) == len(set(placed))
    missing = {f.name for f in dataclasses.fields(train.TrainConfig)} - set(placed)
    assert not missing, f"add {sorted(missing)} to zoo.common.TRAIN_CONFIG_GROUPS"


@pytest.mark.parametrize("entry", ["vae", "hvae", "m2", "resnet_vae"])
def test_help_lists_the_entrys_flags_grouped_with_help_and_defaults(entry):
    text = _help(entry)
    positions = [text.index(header) for header in HEADERS]
    assert positions == sorted(positions), "groups out of order"
    config_cls = zoo.load(entry).Config
    blocks = _flag_blocks(text)
    fields = [f.name for f in dataclasses.fields(config_cls)]
    assert sorted(blocks) == sorted(fields + ["workdir", "verbosity"])
    for name in fields:
        help_text, default = blocks[name]
        assert help_text and help_text != name, f"--{name} has no help text"
        value = getattr(config_cls(), name)
        assert default.startswith(f"default: {common._default_text(value)}"), (name, default)
    # The entry's own fields are "model" options; the shared ones are grouped by TrainConfig.
    model = text[text.index("Model:"):text.index("Data:")]
    shared = {f.name for f in dataclasses.fields(train.TrainConfig)}
    own = [name for name in fields if name not in shared]
    assert own and all(f"--{name}:" in model or f"--[no]{name}:" in model for name in own)
    assert "--dataset:" in text[text.index("Data:"):text.index("Training:")]
    assert "--eval_num_samples:" in text[text.index("Evaluation:"):text.index("Output:")]
    # Not absl's or TensorFlow's internals.
    for internal in ("Try --helpfull", "logtostderr", "test_tmpdir", "pfor",
                     "--[no]run_with_pdb", "tensorflow"):
        assert internal not in text, internal
    assert text.startswith((zoo.load(entry).__doc__ or "").strip()[:40])


def test_help_shows_the_preset_defaults():
    text = _help("resnet_vae")
    help_text, default = _flag_blocks(text)["num_layers"]
    assert default == "default: 20; --preset=small: 2; an integer"
    assert "--preset=small" not in _flag_blocks(text)["preset"][1]


def test_short_help_flag_and_helpfull_still_work():
    assert "Evaluation:" in _help("vae", "-h")
    full = _help("vae", "--helpfull", returncode=1)   # absl's: every flag, internals too
    assert "--latent_size:" in full and "logtostderr" in full


def test_vae_states_its_default_importance_samples():
    help_text, default = _flag_blocks(_help("vae"))["eval_num_samples"]
    k = zoo.load("vae").Config().eval_num_samples
    assert k > 0 and default == f"default: {k}; an integer"
    assert "minute" in help_text


def test_tensorflow_start_up_lines_are_held_back_unless_verbosity_asks_for_them():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = ROOT

    def stderr(*flags):
        out = subprocess.run([sys.executable, "-m", "zoo.vae", "--help", *flags], cwd=ROOT,
                             capture_output=True, text=True, timeout=180, env=env)
        assert out.returncode == 0 and "Model:" in out.stdout, out.stderr[-2000:]
        return out.stderr

    quiet = stderr()
    for noise in ("absl::InitializeLog", "oneDNN", "cuda", "cuInit"):
        assert noise not in quiet, quiet
    assert "oneDNN" in stderr("--verbosity=1")      # what TensorFlow prints when it loads
