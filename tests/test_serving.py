"""TF Serving: the versioned export layout, and docs/serving.md's requests run for real.

The model server cannot be installed here, so the documented REST bodies are
parsed out of docs/serving.md (each JSON block is marked by an HTML comment
`<!-- serving: model=... signature=... format=row|columnar part=request|response -->`,
so the docs and this test cannot drift), decoded as TF Serving decodes them
(row format: a list of per-example values, or of dicts when the signature has
several inputs, stacked per input; columnar: "inputs" as one value or a dict of
them; every tensor of the signature's dtype), run through the exported
SavedModel in a process that imports TensorFlow alone (no tfvae, Keras or TFP),
and encoded as TF Serving answers ("predictions" / "outputs"). The answers must
have the documented responses' keys and shapes (the documented numbers come
from one run of the documented command on one machine; a retrained model gives
others) and equal the Keras model's own computation on the same inputs.
`saved_model_cli run` is run on every signature of the documented VAE's export.
The models are the docs' own commands (tiny digits runs), trained once per
module, with `jit_compile=false` and no image summaries to keep it short.
"""

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tfvae.data import datasets as data_lib
from tfvae.models import serving
from tfvae.training import export as export_lib
from tfvae.training import train
from zoo import workdirs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "serving.md")
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
_BLOCK = re.compile(r"<!-- serving: ([^>]*?) -->\s*```json\n(.*?)```", re.S)
_COMMAND = re.compile(r"<!-- serving-model: (\w+) -->\s*```sh\n(.*?)```", re.S)


# ----------------------------------------------------------------- the documentation
def documented_bodies():
    """{(model, signature, format): {"request": dict, "response": dict}} of docs/serving.md."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    bodies = {}
    for attributes, body in _BLOCK.findall(text):
        tags = dict(item.split("=", 1) for item in attributes.split())
        key = (tags["model"], tags["signature"], tags["format"])
        part = bodies.setdefault(key, {})
        assert tags["part"] not in part, f"{key} has two {tags['part']} blocks"
        part[tags["part"]] = json.loads(body)
    return bodies


def documented_commands():
    """{model name: the training command's entry and flags} of docs/serving.md."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    commands = {}
    for name, command in _COMMAND.findall(text):
        words = shlex.split(command.replace("\\\n", " "))
        assert words[:2] == ["python", "-m"], command
        flags = dict(word[2:].split("=", 1) for word in words[3:])
        commands[name] = (words[2], flags)
    return commands


def _config(entry_module, flags, **overrides):
    """The entry's Config from command-line `flags` {name: text} (as the CLI parses them)."""
    fields = {f.name: f for f in dataclasses.fields(entry_module.Config)}
    values = {}
    for name, text in {**flags, **overrides}.items():
        if name == "workdir":
            continue
        default = fields[name].default
        if isinstance(default, bool):
            values[name] = text in (True, "true", "True", "1")
        elif isinstance(default, tuple):
            values[name] = tuple(int(v) for v in str(text).split(","))
        else:
            values[name] = type(default)(text)
    return entry_module.Config(**values)


# ------------------------------------------------------- TF Serving's JSON mapping
def decode_request(body, input_specs):
    """{input name: np.ndarray} of a REST predict body, as TF Serving reads it.

    Args:
      body: {"instances": [...]} (row) or {"inputs": value or {name: value}} (columnar).
      input_specs: {name: TensorSpec} of the signature.
    """
    names = sorted(input_specs)
    if "instances" in body:
        instances = body["instances"]
        if len(names) == 1 and not all(isinstance(i, dict) for i in instances):
            columns = {names[0]: instances}
        else:
            columns = {name: [instance[name] for instance in instances] for name in names}
    else:
        inputs = body["inputs"]
        columns = inputs if isinstance(inputs, dict) else {names[0]: inputs}
    assert sorted(columns) == names, (sorted(columns), names)
    return {name: np.asarray(value, input_specs[name].dtype.as_numpy_dtype)
            for name, value in columns.items()}


def encode_response(outputs, row):
    """The REST predict answer of `outputs` {name: array}: {"predictions": [...]} (row;
    one value per example, or a dict per example when there are several outputs) or
    {"outputs": value or {name: value}} (columnar)."""
    outputs = {name: np.asarray(value).tolist() for name, value in outputs.items()}
    if not row:
        return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    sizes = {len(value) for value in outputs.values()}
    assert len(sizes) == 1, f"outputs of different batch sizes: {sizes}"
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    return {"predictions": [{name: value[i] for name, value in outputs.items()}
                            for i in range(sizes.pop())]}


# The TensorFlow-only process: one JSON line per request set on stdin, one answer
# line each; it also reports which of tfvae, TFP, tf_keras and Keras (beyond the
# helpers `import tensorflow` loads itself) it has imported.
_WORKER = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    from test_serving_codec import decode_request, encode_response
    def imported(name):
        return {k for k in sys.modules if k == name or k.startswith(name + ".")}
    # `import tensorflow` itself loads a few `keras.src` helper modules: only Keras
    # modules beyond those count as imported by the SavedModel.
    keras_of_tensorflow = imported("keras")
    loaded = {}
    for line in sys.stdin:
        job = json.loads(line)
        answers = []
        for request in job["requests"]:
            path = request["saved_model"]
            model = loaded.get(path) or loaded.setdefault(path, tf.saved_model.load(path))
            body = request["body"]
            signature = model.signatures[body.get("signature_name", "serving_default")]
            try:
                inputs = decode_request(body, signature.structured_input_signature[1])
                outputs = signature(**{k: tf.constant(v) for k, v in inputs.items()})
                answers.append({"ok": encode_response(
                    {k: v.numpy() for k, v in outputs.items()}, "instances" in body)})
            except Exception as e:  # an error TF Serving would return
                answers.append({"error": f"{type(e).__name__}: {e}"})
        modules = sorted(imported("keras") - keras_of_tensorflow) + [
            m for m in ("tfvae", "tensorflow_probability", "tf_keras") if imported(m)]
        sys.stdout.write("ANSWER " + json.dumps({"answers": answers, "modules": modules}) + "\\n")
        sys.stdout.flush()
''')


@pytest.fixture(scope="module")
def tf_only(tmp_path_factory):
    """Runs REST bodies through SavedModels in the TensorFlow-only worker process."""
    directory = tmp_path_factory.mktemp("tf_only")
    # The worker gets the codec functions of this file as a module of their own
    # (importing this file would import tfvae).
    source = open(__file__, encoding="utf-8").read()
    codec = "import numpy as np\n\n" + "\n\n".join(
        re.search(rf"^def {name}\(.*?(?=^\S)", source, re.S | re.M).group(0)
        for name in ("decode_request", "encode_response"))
    (directory / "test_serving_codec.py").write_text(codec)
    log = open(directory / "stderr.txt", "w+")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(directory)}
    worker = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                              cwd=str(directory))

    def run(requests):
        worker.stdin.write(json.dumps({"requests": requests}) + "\n")
        worker.stdin.flush()
        for line in worker.stdout:
            if line.startswith("ANSWER "):
                out = json.loads(line[len("ANSWER "):])
                break
        else:
            log.seek(0)
            raise AssertionError(f"The TensorFlow-only worker died:\n{log.read()[-3000:]}")
        assert out["modules"] == [], f"the worker imported {out['modules']}"
        return out["answers"]

    yield run
    worker.stdin.close()
    worker.wait(timeout=60)
    log.close()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{model name: (config, workdir, Keras model)} of the docs' training commands."""
    trained = {}
    for name, (module, flags) in documented_commands().items():
        entry = zoo.load(module.split(".", 1)[1])
        config = _config(entry, flags, jit_compile="false", image_summaries="false")
        workdir = str(tmp_path_factory.mktemp("serving") / name)
        train.run(config, entry.build_model, workdir)
        trained[name] = (config, workdir,
                         workdirs.load_model(os.path.join(workdir, "model.keras")))
    return trained


def _keras_endpoints(model, config):
    """{signature: (fn, input specs)} as the export traced them (pixel ones included)."""
    endpoints = model.serving_endpoints(100, config.export_log_prob_samples)
    pixels = export_lib.pixel_preprocessing(data_lib.info(config.dataset), config.binarize,
                                            model.image_shape)
    if pixels is not None:
        endpoints += export_lib.pixel_endpoints(endpoints, pixels)
    return {name: (fn, specs) for name, fn, specs in endpoints}


# -------------------------------------------------------------------------- tests
def _batch_only(specs):
    """Whether every input has a batch dimension (what the row format can send)."""
    return all(spec.shape.rank and spec.shape[0] is None for spec in specs.values())


def test_every_signature_of_every_documented_model_is_documented(exports):
    """Every signature of each documented export has a columnar request and response,
    and a row one exactly when every input has a batch dimension (the others, the seeded
    signatures, are columnar only, as the docs say)."""
    bodies = documented_bodies()
    columnar_only = []
    for name, (_, workdir, _) in exports.items():
        path = export_lib.latest_export(workdir)
        loaded = tf.saved_model.load(path)
        signatures = set(loaded.signatures) - {"serving_default"}   # = the first endpoint
        assert {s for (m, s, _) in bodies if m == name} == signatures, name
        for signature in sorted(signatures):
            specs = loaded.signatures[signature].structured_input_signature[1]
            assert set(bodies[name, signature, "columnar"]) == {"request", "response"}
            if _batch_only(specs):
                assert set(bodies[name, signature, "row"]) == {"request", "response"}
            else:
                # Not sendable as rows: in the row format every input gets the batch
                # dimension (the number of instances), which a seed [2] or a scalar
                # count must not have.
                assert (name, signature, "row") not in bodies, (name, signature)
                columnar_only.append(signature)
    assert {"elbo_seeded", "log_prob_seeded", "sample_seeded"} <= set(columnar_only)


def test_documented_requests_give_the_documented_responses(exports, tf_only):
    """Each documented body, decoded as TF Serving does and run through the SavedModel in
    the TensorFlow-only process: the documented response's keys and shapes, and the Keras
    model's numbers on the same inputs."""
    bodies = documented_bodies()
    keys = sorted(k for k in bodies if k[0] in exports)
    requests = [{"saved_model": export_lib.latest_export(exports[k[0]][1]),
                 "body": bodies[k]["request"]} for k in keys]
    answers = dict(zip(keys, tf_only(requests)))
    for key in keys:
        name, signature, form = key
        config, _, model = exports[name]
        assert "ok" in answers[key], (key, answers[key])
        got = answers[key]["ok"]
        documented = bodies[key]["response"]
        assert _structure(got) == _structure(documented), (key, _structure(got),
                                                           _structure(documented))
        fn, specs = _keras_endpoints(model, config)[signature]
        inputs = decode_request(bodies[key]["request"], {s.name: s for s in specs})
        expected = fn(*[tf.constant(inputs[s.name]) for s in specs])
        expected = encode_response({k: v.numpy() for k, v in expected.items()}, form == "row")
        _assert_close(got, expected, key)


def _structure(body):
    """The keys and array shapes of a response body."""
    if isinstance(body, dict):
        return {k: _structure(v) for k, v in body.items()}
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return [_structure(item) for item in body]
    return list(np.shape(body))


def _assert_close(got, expected, key):
    if isinstance(got, dict):
        assert sorted(got) == sorted(expected), key
        for k in got:
            _assert_close(got[k], expected[k], key)
    elif isinstance(got, list) and got and isinstance(got[0], dict):
        for g, e in zip(got, expected, strict=True):
            _assert_close(g, e, key)
    else:
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4,
                                   atol=1e-4, err_msg=str(key))


def test_batch_only_signatures_use_the_stated_seed_and_k_per_example(exports, tf_only):
    """As docs/serving.md states: row i of elbo(x) / log_prob(x) equals the seeded
    signature on x[i:i+1] with seed SERVING_SEED (and K = export_log_prob_samples), so a
    row's answer does not depend on the rest of its batch; the same index gives the same
    sample; the pixel signatures are the float ones on the documented preprocessing."""
    config, workdir, _ = exports["digits_vae"]
    path = export_lib.latest_export(workdir)
    x = (np.random.default_rng(3).random((3, 8, 8, 1)) > 0.5).astype(np.float32)
    pixels = (np.random.default_rng(4).random((2, 8, 8, 1)) * 256).astype(np.uint8)
    seed = list(serving.SERVING_SEED)
    k = config.export_log_prob_samples
    requests = [{"signature_name": "elbo", "inputs": x.tolist()},
                {"signature_name": "log_prob", "inputs": x.tolist()},
                {"signature_name": "elbo", "inputs": x[::-1].tolist()},
                {"signature_name": "sample", "inputs": [5, 2, 5]},
                {"signature_name": "elbo_pixels", "inputs": pixels.tolist()},
                {"signature_name": "elbo", "inputs": (pixels / 255.0 >= 0.5).tolist()}]
    for i in range(3):
        requests += [{"signature_name": "elbo_seeded", "inputs": {"x": x[i:i + 1].tolist(),
                                                                   "seed": seed}},
                     {"signature_name": "log_prob_seeded", "inputs": {
                         "x": x[i:i + 1].tolist(), "seed": seed, "num_samples": k}}]
    out = [a["ok"]["outputs"] for a in tf_only([{"saved_model": path, "body": b}
                                                for b in requests])]
    elbo, log_prob, reversed_elbo, samples, elbo_pixels, elbo_thresholded = out[:6]
    np.testing.assert_allclose(elbo, [out[6 + 2 * i][0] for i in range(3)], rtol=1e-5)
    np.testing.assert_allclose(log_prob, [out[7 + 2 * i][0] for i in range(3)], rtol=1e-5)
    np.testing.assert_allclose(reversed_elbo[::-1], elbo, rtol=1e-5)
    np.testing.assert_array_equal(samples[0], samples[2])
    assert not np.array_equal(samples[0], samples[1])
    np.testing.assert_allclose(elbo_pixels, elbo_thresholded, rtol=1e-6)
    assert config.binarize == "dynamic"          # hence the 0.5 threshold


def test_saved_model_cli_runs_every_signature(exports, tf_only, tmp_path):
    """`saved_model_cli show --all` lists every signature and `saved_model_cli run` on each
    (the documented columnar inputs, as .npy files) gives the TF-only process' outputs."""
    _, workdir, _ = exports["digits_vae"]
    path = export_lib.latest_export(workdir)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    shown = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", path],
                           capture_output=True, text=True, env=env, timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    listed = set(re.findall(r"signature_def\['(\w+)'\]", shown.stdout)) - {
        "__saved_model_init_op"}
    signatures = sorted(tf.saved_model.load(path).signatures)
    assert sorted(listed) == signatures
    bodies = documented_bodies()
    loaded = tf.saved_model.load(path)
    requests, ran = [], {}
    for signature in signatures:
        name = "encode" if signature == "serving_default" else signature
        body = {**bodies["digits_vae", name, "columnar"]["request"], "signature_name": signature}
        inputs = decode_request(body, loaded.signatures[signature].structured_input_signature[1])
        files = []
        for key, value in inputs.items():
            np.save(tmp_path / f"{signature}.{key}.npy", value)
            files.append(f"{key}={tmp_path / f'{signature}.{key}.npy'}")
        outdir = tmp_path / f"{signature}.out"
        run = subprocess.run([SAVED_MODEL_CLI, "run", "--dir", path, "--tag_set", "serve",
                              "--signature_def", signature, "--inputs", ";".join(files),
                              "--outdir", str(outdir)],
                             capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, (signature, run.stderr[-3000:])
        ran[signature] = {f[:-4]: np.load(outdir / f) for f in os.listdir(outdir)}
        requests.append({"saved_model": path, "body": body})
    for signature, answer in zip(signatures, tf_only(requests)):
        expected, outputs = answer["ok"]["outputs"], ran[signature]
        if len(outputs) == 1:
            np.testing.assert_allclose(next(iter(outputs.values())), expected, rtol=1e-5,
                                       atol=1e-6, err_msg=signature)
        else:
            assert sorted(outputs) == sorted(expected), signature
            for key, value in outputs.items():
                np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-6,
                                           err_msg=f"{signature}/{key}")


# ------------------------------------------------------------------ the layout
def _tiny_flow():
    """A built two-moons MAF (few, cheap signatures, no pixel ones)."""
    import zoo.maf
    model = zoo.maf.build_model(zoo.maf.Config(num_flows=1, hidden_units=(4,)),
                                data_lib.info("two_moons"))
    model(np.zeros((2, 2), np.float32))
    return model


def test_versions_count_up_and_only_the_newest_are_kept(tmp_path):
    model = _tiny_flow()
    export_dir = str(tmp_path / "export")
    first = export_lib.write_version(model, export_dir, keep=2)
    second = export_lib.write_version(model, export_dir, keep=2)
    assert (first, second) == (os.path.join(export_dir, "1"), os.path.join(export_dir, "2"))
    assert export_lib.export_versions(export_dir) == [1, 2]
    assert export_lib.latest_export(str(tmp_path)) == second      # from the workdir
    assert export_lib.latest_export(export_dir) == second         # from export/
    third = export_lib.write_version(model, export_dir, keep=2)
    assert third == os.path.join(export_dir, "3")
    assert sorted(os.listdir(export_dir)) == ["2", "3"]           # 1 pruned, nothing else
    os.rename(os.path.join(export_dir, "3"), os.path.join(export_dir, "7"))
    assert export_lib.write_version(model, export_dir, keep=1) == os.path.join(export_dir, "8")
    assert sorted(os.listdir(export_dir)) == ["8"]
    with pytest.raises(ValueError, match="`keep` must be an integer >= 1"):
        export_lib.write_version(model, export_dir, keep=0)


def test_an_interrupted_export_leaves_no_partial_version(tmp_path, monkeypatch):
    model = _tiny_flow()
    export_dir = str(tmp_path / "export")
    export_lib.write_version(model, export_dir)
    real = export_lib.export_saved_model

    def interrupted(model, path, **kwargs):
        real(model, path, **kwargs)
        os.remove(os.path.join(path, "saved_model.pb"))      # half written ...
        raise KeyboardInterrupt                               # ... when the process stops
    monkeypatch.setattr(export_lib, "export_saved_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_lib.write_version(model, export_dir)
    monkeypatch.undo()
    # TF Serving sees version 1 only: the partial folder's name is not an integer.
    names = os.listdir(export_dir)
    assert [n for n in names if n.isdigit()] == ["1"], names
    assert export_lib.export_versions(export_dir) == [1]
    assert any(n.startswith(".") for n in names)
    # The next export removes it and takes version 2.
    assert export_lib.write_version(model, export_dir) == os.path.join(export_dir, "2")
    assert sorted(os.listdir(export_dir)) == ["1", "2"]


def test_a_trained_workdir_holds_version_1_and_no_saved_model_folder(exports):
    for _, workdir, _ in exports.values():
        assert sorted(os.listdir(os.path.join(workdir, "export"))) == ["1"]
        assert not os.path.exists(os.path.join(workdir, "saved_model"))


def test_latest_export_names_the_places_looked_in(tmp_path):
    with pytest.raises(FileNotFoundError, match="export/<integer>/saved_model.pb"):
        export_lib.latest_export(str(tmp_path))


@pytest.mark.parametrize("field", ["export_versions_to_keep", "export_log_prob_samples"])
def test_export_fields_are_validated_naming_them(field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        train.TrainConfig(dataset="digits", **{field: 0})
    assert field in train.RESUMABLE_KEYS
