"""The real `tensorboard` server shows what a trained workdir wrote, through its HTTP API.

A tiny `python -m zoo.vae` run (digits, 2 epochs) is trained from the CLI;
`tensorboard --logdir` over its parent folder (as for a sweep of workdirs)
is started on 127.0.0.1 on a free port and polled until its plugins have
loaded the run; then the scalars (epoch curves, the final test metrics at the
last epoch's step, KL per latent dimension), images (reconstructions, prior
samples, latent traversals, each per epoch at the scalars' steps),
histograms, HParams (the config as hparams, the test metrics as metrics)
and the Embedding Projector (test posterior means, labels, sprite) are read
back, and the server is stopped by its PID.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENSORBOARD = os.path.join(os.path.dirname(sys.executable), "tensorboard")
EPOCHS = 2
RUN = "vae/tensorboard"          # the workdir "vae" under the server's logdir


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path, **query):
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path, body):
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(logdir, metrics.json) of a tiny vae run trained through the CLI."""
    logdir = tmp_path_factory.mktemp("tensorboard_server")
    workdir = logdir / "vae"
    command = [sys.executable, "-m", "zoo.vae", f"--workdir={workdir}", "--dataset=digits",
               f"--epochs={EPOCHS}", "--hidden_units=32", "--latent_size=4",
               "--eval_num_samples=10", "--export=false", "--jit_compile=false"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert run.returncode == 0, run.stderr[-3000:]
    with open(workdir / "metrics.json", encoding="utf-8") as f:
        return str(logdir), json.load(f)


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """A running `tensorboard` over the trained logdir, ready; stopped by its PID after."""
    logdir, _ = trained
    port = _free_port()
    log = tmp_path_factory.mktemp("tensorboard_log") / "server.log"
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [TENSORBOARD, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port),
             "--reload_interval", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=ROOT))
    client = _Server(port)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                tags = client.get("/data/plugin/scalars/tags")
                if "test/log_likelihood" in tags.get(f"{RUN}/test", {}):
                    break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not serve the run (exit {process.poll()}): "
                            f"{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield client
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def test_the_plugins_have_data(server):
    plugins = server.get("/data/plugins_listing")
    for name in ("scalars", "images", "histograms", "hparams"):
        assert plugins[name]["enabled"], name
    deadline = time.monotonic() + 60          # the projector looks for its configs in a thread
    while not server.get("/data/plugins_listing")["projector"]["enabled"]:
        assert time.monotonic() < deadline, "the projector plugin found no embedding"
        time.sleep(0.5)


def test_projector_has_the_test_posterior_means_labels_and_sprite(server):
    run = f"{RUN}/projector"
    assert server.get("/data/plugin/projector/runs") == [run]
    info = server.get("/data/plugin/projector/info", run=run)
    (embedding,) = info["embeddings"]
    name = embedding["tensorName"]
    assert embedding["tensorShape"] == [300, 4]             # the digits test set, latent size 4
    assert embedding["sprite"]["singleImageDim"] == [8, 8]
    query = urllib.parse.urlencode({"run": run, "name": name})
    with urllib.request.urlopen(f"{server.base}/data/plugin/projector/tensor?{query}",
                                timeout=30) as response:
        assert len(response.read()) == 300 * 4 * 4          # float32
    with urllib.request.urlopen(f"{server.base}/data/plugin/projector/metadata?{query}",
                                timeout=30) as response:
        labels = response.read().decode().split()
    assert len(labels) == 300 and set(labels) <= set("0123456789")
    with urllib.request.urlopen(f"{server.base}/data/plugin/projector/sprite_image?{query}",
                                timeout=30) as response:
        assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_test_metrics_are_scalars_at_the_last_epoch_step(server, trained):
    _, metrics = trained
    tags = server.get("/data/plugin/scalars/tags")
    assert "epoch_elbo" in tags[f"{RUN}/validation"]
    test_tags = tags[f"{RUN}/test"]
    assert "K = 10" in test_tags["test/log_likelihood"]["description"]
    for name in ("elbo", "log_likelihood", "bits_per_dim", "best_validation_elbo"):
        points = server.get("/data/plugin/scalars/scalars", run=f"{RUN}/test",
                            tag=f"test/{name}")
        assert len(points) == 1, name
        _, step, value = points[0]
        expected = metrics[f"test_{name}"] if name != "best_validation_elbo" else \
            metrics[name]
        assert step == EPOCHS - 1 and value == pytest.approx(expected, rel=1e-6), name
    validation = server.get("/data/plugin/scalars/scalars", run=f"{RUN}/validation",
                            tag="epoch_elbo")
    assert [step for _, step, _ in validation] == list(range(EPOCHS))


def test_kl_per_latent_dimension_every_epoch(server):
    tags = server.get("/data/plugin/scalars/tags")[f"{RUN}/images"]
    assert {f"kl_per_dimension/dim_{i:02d}" for i in range(4)} | {"kl_active_dimensions"} \
        <= set(tags)
    points = server.get("/data/plugin/scalars/scalars", run=f"{RUN}/images",
                        tag="kl_per_dimension/dim_00")
    assert [step for _, step, _ in points] == list(range(EPOCHS))
    assert all(value >= 0 for _, _, value in points)
    histograms = server.get("/data/plugin/histograms/tags")[f"{RUN}/images"]
    assert {"kl_per_dimension", "posterior_mean", "posterior_stddev"} <= set(histograms)
    kl = server.get("/data/plugin/histograms/histograms", run=f"{RUN}/images",
                    tag="kl_per_dimension")
    assert [step for _, step, _ in kl] == list(range(EPOCHS))


def test_images_with_captions_and_traversals_at_the_epoch_steps(server):
    tags = server.get("/data/plugin/images/tags")[f"{RUN}/images"]
    assert {"reconstructions", "prior_samples", "latent_traversal"} <= set(tags)
    assert "held-out data" in tags["reconstructions"]["description"]
    assert "latent dimension i" in tags["latent_traversal"]["description"]
    for tag in ("reconstructions", "latent_traversal"):
        images = server.get("/data/plugin/images/images", run=f"{RUN}/images", tag=tag,
                            sample=0)
        assert [image["step"] for image in images] == list(range(EPOCHS)), tag
    image = server.get("/data/plugin/images/images", run=f"{RUN}/images",
                       tag="latent_traversal", sample=0)[-1]
    with urllib.request.urlopen(server.base + "/data/plugin/images/individualImage?"
                                + image["query"], timeout=30) as response:
        png = response.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # 4 latent dimensions (rows) x 7 values (columns) of 8x8 digits.
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (height, width) == (4 * 8, 7 * 8)


def test_hparams_dashboard_lists_the_run_with_its_config_and_test_metrics(server, trained):
    _, metrics = trained
    experiment = server.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {"latent_size", "hidden_units", "dataset", "eval_num_samples", "entry"} <= hparams
    metric_tags = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {("test", "test/elbo"), ("test", "test/log_likelihood"),
            ("test", "test/bits_per_dim"), ("validation", "epoch_elbo")} <= metric_tags
    groups = server.post("/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                            "STATUS_RUNNING"]})["sessionGroups"]
    assert len(groups) == 1
    group = groups[0]
    assert group["hparams"]["latent_size"] == 4 and group["hparams"]["hidden_units"] == "32"
    assert group["hparams"]["dataset"] == "digits" and group["hparams"]["entry"] == "zoo.vae"
    values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]
              if m["name"]["group"] == "test"}
    assert values["test/log_likelihood"] == pytest.approx(metrics["test_log_likelihood"],
                                                          rel=1e-6)
    assert [session["name"] for session in group["sessions"]] == [RUN]
