"""The model zoo: one module per entry, each runnable as `python -m zoo.<entry>`.

An entry module defines `Config` (a `tfvae.training.train.TrainConfig` dataclass with
the entry's hyper-parameters and defaults) and `build_model(config, info)`.

Run as `python -m zoo.<entry or tool>`, this package (imported first, before
TensorFlow) keeps TensorFlow's C++ start-up lines out of the user's output
(`quiet_tensorflow_start`), unless the user set `TF_CPP_MIN_LOG_LEVEL` or
asked for more with `--verbosity=1` (`-v 1`).
"""

import importlib
import os
import re
import sys
import tempfile

ENTRIES = ("vae", "vae_fullcov", "vae_iaf", "vae_planar", "vae_householder", "vae_sylvester",
           "vae_flow_prior", "maf", "realnvp",
           "iwae", "miwae", "beta_vae", "beta_tcvae", "vamp_vae",
           "cvae", "m2", "gumbel_vae", "pixel_vae",
           "hvae", "ladder_vae", "resnet_vae",
           "vem", "mcmc_em", "wake_sleep")
"""The registry: every entry, in the order of `python -m zoo --list`, the README's entry
table and BUILD's `py_binary` targets (`tests/test_registry.py` checks that they agree)."""

TOOLS = ("evaluate", "gradients", "gaps")
"""Commands that work on any entry's workdir (`python -m zoo.evaluate`, `zoo.gradients`)."""


def load(name):
    """Returns the entry module `zoo.<name>`; ValueError for an unknown entry."""
    if name not in ENTRIES:
        raise ValueError(f"Unknown zoo entry {name!r}. Known entries: {', '.join(ENTRIES)}")
    return importlib.import_module(f"zoo.{name}")


# C++ start-up lines TensorFlow prints while it loads, before its logging is
# configured (so `TF_CPP_MIN_LOG_LEVEL` cannot hide them), and the cuInit
# error of a CPU-only machine: they tell a CPU user nothing.
_START_UP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\d+ \S+\.cc:\d+\] "            # any C++ INFO line
    r"|E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit")

_VERBOSITY_FLAG = re.compile(r"--?(?:verbosity|v)(?:=(.*))?$")


def _asks_for_more(args):
    """Whether the arguments set absl's `--verbosity` (`-v`) above 0 (INFO)."""
    for index, arg in enumerate(args):
        match = _VERBOSITY_FLAG.match(arg)
        if match:
            value = match.group(1)
            if value is None:
                value = args[index + 1] if index + 1 < len(args) else ""
            try:
                return int(value) > 0
            except ValueError:
                return True           # absl refuses it with its own message
    return False


def _running_module():
    """(NAME, its command-line arguments) while `python -m NAME ARGS...` imports NAME's
    parent packages (runpy keeps `sys.argv[0]` at "-m" until then); else (None, [])."""
    argv = getattr(sys, "orig_argv", [])
    if sys.argv[:1] != ["-m"] or "-m" not in argv[:-1]:
        return None, []
    index = argv.index("-m")
    return argv[index + 1], argv[index + 2:]


def quiet_tensorflow_start(args=()):
    """Imports TensorFlow with its C++ start-up lines held back.

    Sets `TF_CPP_MIN_LOG_LEVEL=1` (C++ INFO lines off: XLA's and oneDNN's
    notices), then imports TensorFlow and lists its devices (where CUDA is
    probed) with stderr (file descriptor 2) going to a temporary file, and
    writes back every captured line but the start-up noise (`_START_UP_NOISE`):
    warnings and errors of the import, Python's too, still reach the user.
    Does nothing if TensorFlow is imported already, the user set
    `TF_CPP_MIN_LOG_LEVEL`, or `args` set `--verbosity` (`-v`) above 0.

    Args:
      args: the command-line arguments (without the program's name).
    """
    if ("tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ
            or _asks_for_more(args)):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                    if not _START_UP_NOISE.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


_main_module, _args = _running_module()
if _main_module is not None and _main_module.startswith("zoo."):   # not `-m zoo --list`
    quiet_tensorflow_start(_args)
del _main_module, _args
