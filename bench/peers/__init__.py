"""Peer implementations for side-by-side speed comparisons (pythae, PyTorch).

The peer runs in its own virtual environment (`bash bench/peers/install.sh`
creates `.venv-peers/` from bench/peers/requirements.txt); tfvae never
imports PyTorch. `PythaePeer` starts the worker once (data, model, warm-up)
and then times one epoch per request, so a benchmark can alternate A/B
epochs with TensorFlow in the same run.
"""

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEER_PYTHON = os.path.join(ROOT, ".venv-peers", "bin", "python")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pythae_worker.py")


def peer_flags(entry_name, config):
    """The pythae model matching a zoo entry's config, as worker flags.

    vae -> `VAE`; iwae -> `IWAE` with the same k; vae_iaf -> `VAE_IAF` with
    as many MADE blocks of the same width and depth (pythae's IAF takes no
    context from the encoder, so it is slightly cheaper than tfvae's).

    Raises:
      ValueError: the entry has no pythae counterpart here.
    """
    if entry_name == "vae":
        return {"model": "vae"}
    if entry_name == "iwae" and getattr(config, "m", 1) == 1:
        return {"model": "iwae", "k": config.k}
    if entry_name == "vae_iaf":
        return {"model": "vae_iaf", "num_flows": config.num_flows,
                "flow_hidden": config.flow_hidden_units[0],
                "flow_layers": len(config.flow_hidden_units)}
    raise ValueError(f"No pythae peer for zoo entry {entry_name!r}; peers exist for vae, iwae "
                     "and vae_iaf.")


class PythaePeer:
    """pythae's VAE with tfvae's reference architecture, timed one epoch at a time.

    Args:
      threads: `torch.set_num_threads` (set it to TensorFlow's intra-op threads).
      batch_size: examples per step.
      steps: steps per timed epoch.
      latent_size: dimension of z.
      python: the peer environment's interpreter.
      **model_flags: the worker's model flags (`model`, `k`, `num_flows`,
        `flow_hidden`, `flow_layers`; see pythae_worker.py).
    """

    def __init__(self, threads, batch_size=128, steps=400, latent_size=32, python=PEER_PYTHON,
                 **model_flags):
        if not os.path.exists(python):
            raise RuntimeError(f"No peer environment at {python}: run `bash bench/peers/install.sh` "
                               "(PyTorch 2.13.0 + pythae) first.")
        self.batch_size, self.steps = batch_size, steps
        self._proc = subprocess.Popen(
            [python, WORKER, f"--threads={threads}", f"--batch_size={batch_size}",
             f"--steps={steps}", f"--latent_size={latent_size}",
             *(f"--{key}={value}" for key, value in model_flags.items())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self):
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"The pythae worker died: {self._proc.stderr.read()[-3000:]}")
        return json.loads(line)

    def epoch_seconds(self):
        """Runs one timed epoch in the peer; returns its wall-clock seconds."""
        self._proc.stdin.write("epoch\n")
        self._proc.stdin.flush()
        return self._read()["seconds"]

    def close(self):
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
