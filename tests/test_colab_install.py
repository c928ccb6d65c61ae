"""The Colab notebooks' install cell and badges, against pyproject.toml.

The repository's address is written in one place, `[project.urls] Repository`
in pyproject.toml; colab/sync.py writes it into every notebook's install cell
(`REPO = "git+<url>.git"`), its "Open in Colab" badge and colab/README.md.
These tests check that the checked-in files are up to date with it, that the
script behaves (no-op, --check, a fork's URL, a non-GitHub URL), and that the
install cell's own command installs the package into a fresh virtual
environment from a copy of the repository, as Colab does from the URL.
"""

import ast
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
COLAB = REPO / "colab"
SYNC = COLAB / "sync.py"
BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/{owner}/{name}/blob/main/colab/{file})")
NOTEBOOKS = sorted(p.name for p in COLAB.glob("*.ipynb"))
# Files under colab/ that sync.py writes (the script itself is not one of them).
SYNCED = NOTEBOOKS + ["README.md"]


def _repository_url():
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"]


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _notebook(name):
    return json.loads((COLAB / name).read_text(encoding="utf-8"))


def _install_cell(nb):
    cells = [c for c in nb["cells"]
             if c["cell_type"] == "code" and re.search(r"(?m)^REPO = ", _source(c))]
    assert len(cells) == 1, "expected one code cell assigning REPO"
    return _source(cells[0])


def _install_command(source, python, repo):
    """The argument list of the install cell's `subprocess.run([...])`, evaluated.

    `sys.executable` becomes `python` and the name `REPO` becomes `repo`;
    every other element must be a string constant.
    """
    calls = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and ast.unparse(node.func) == "subprocess.run"]
    assert len(calls) == 1, "expected one subprocess.run call in the install cell"
    args = calls[0].args[0]
    assert isinstance(args, ast.List), ast.unparse(args)
    command = []
    for element in args.elts:
        text = ast.unparse(element)
        if text == "sys.executable":
            command.append(str(python))
        elif text == "REPO":
            command.append(str(repo))
        else:
            assert isinstance(element, ast.Constant) and isinstance(element.value, str), text
            command.append(element.value)
    return command


def _run_sync(*args, root=None):
    command = [sys.executable, str(SYNC), *args] + (["--root", str(root)] if root else [])
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _copy_for_sync(tmp_path, url=None):
    """A root with pyproject.toml (Repository set to `url` if given) and colab/."""
    root = tmp_path / "root"
    shutil.copytree(COLAB, root / "colab", ignore=shutil.ignore_patterns("__pycache__"))
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    if url is not None:
        text, count = re.subn(r'(?m)^Repository = "[^"]*"$', f'Repository = "{url}"', text)
        assert count == 1
    (root / "pyproject.toml").write_text(text, encoding="utf-8")
    return root


def test_sync_check_passes_on_the_repository():
    result = _run_sync("--check")
    assert result.returncode == 0, (
        "colab/ is out of date with pyproject.toml's Repository URL; run `python colab/sync.py`.\n"
        + result.stdout + result.stderr)


def test_notebooks_and_readme_carry_pyprojects_url():
    url = _repository_url()
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", url)
    assert match, f"pyproject.toml's Repository URL {url!r} is not a GitHub repository"
    owner, name = match.groups()
    readme = (COLAB / "README.md").read_text(encoding="utf-8")
    for file in NOTEBOOKS:
        nb = _notebook(file)
        repo_lines = re.findall(r'(?m)^REPO = "([^"]*)"', _install_cell(nb))
        assert repo_lines == [f"git+https://github.com/{owner}/{name}.git"], (file, repo_lines)
        markdown = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
        badge = BADGE.format(owner=owner, name=name, file=file)
        assert _source(markdown[0]).split("\n")[0] == badge, file
        assert nb["metadata"]["colab"]["provenance"] == [], file
        assert {"kernelspec", "language_info"} <= set(nb["metadata"]), file
        row = [line for line in readme.split("\n") if line.startswith(f"| [`{file}`]({file})")]
        assert len(row) == 1 and badge in row[0], (file, row)
    placeholders = [str(p.relative_to(REPO)) for p in COLAB.rglob("*")
                    if p.is_file() and b"YOUR-ORG" in p.read_bytes()]
    assert not placeholders, f"placeholder address left in {placeholders}"


@pytest.mark.parametrize("file", NOTEBOOKS)
def test_tensorflow_log_level_is_set_before_any_import_of_it(file):
    """TF_CPP_MIN_LOG_LEVEL must be set before the first import that loads TensorFlow."""
    cells = [_source(c) for c in _notebook(file)["cells"] if c["cell_type"] == "code"]
    lines = "\n".join(cells).split("\n")
    first_set = next(i for i, line in enumerate(lines) if "TF_CPP_MIN_LOG_LEVEL" in line)
    stdlib = {"glob", "json", "os", "subprocess", "sys", "tempfile", "warnings", "pathlib"}
    for line in lines[:first_set]:
        match = re.match(r"\s*(?:import|from)\s+([\w.]+)", line)
        assert not match or match.group(1).split(".")[0] in stdlib, (file, line)


def test_sync_is_a_byte_identical_no_op_on_synced_files(tmp_path):
    root = _copy_for_sync(tmp_path)
    before = {f: ((root / "colab" / f).read_bytes(), (root / "colab" / f).stat().st_mtime_ns)
              for f in SYNCED}
    result = _run_sync(root=root)
    assert result.returncode == 0, result.stdout + result.stderr
    for f in SYNCED:
        path = root / "colab" / f
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before[f], f"{f} was rewritten"


def test_sync_follows_a_forks_url(tmp_path):
    root = _copy_for_sync(tmp_path, url="https://github.com/someone/tfvae-fork/")
    before = {f: (root / "colab" / f).read_bytes() for f in SYNCED}
    check = _run_sync("--check", root=root)
    assert check.returncode == 1, check.stdout + check.stderr
    for f in SYNCED:
        assert f"colab/{f}" in check.stdout, (f, check.stdout)
        assert (root / "colab" / f).read_bytes() == before[f], f"--check wrote {f}"
    result = _run_sync(root=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _run_sync("--check", root=root).returncode == 0
    for file in NOTEBOOKS:
        text = (root / "colab" / file).read_text(encoding="utf-8")
        nb = json.loads(text)
        assert re.findall(r'(?m)^REPO = "([^"]*)"', _install_cell(nb)) == [
            "git+https://github.com/someone/tfvae-fork.git"]
        first = _source([c for c in nb["cells"] if c["cell_type"] == "markdown"][0])
        assert first.split("\n")[0] == BADGE.format(owner="someone", name="tfvae-fork", file=file)
        assert first.count("colab-badge.svg") == 1, "the old badge must be replaced, not kept"
        assert all(c["outputs"] == [] and c["execution_count"] is None
                   for c in nb["cells"] if c["cell_type"] == "code")
        # The notebooks' JSON style (nbformat's: indent 1, final newline) is kept.
        assert text.startswith('{\n "cells": [\n') and text.endswith("}\n"), file
    readme = (root / "colab" / "README.md").read_text(encoding="utf-8")
    assert readme.count("github/someone/tfvae-fork/blob/main/colab/") == len(NOTEBOOKS)
    assert "github/tfvae/" not in readme


def test_sync_refuses_a_url_that_is_not_github(tmp_path):
    url = "https://gitlab.com/someone/tfvae"
    root = _copy_for_sync(tmp_path, url=url)
    before = {f: (root / "colab" / f).read_bytes() for f in SYNCED}
    for args in ((), ("--check",)):
        result = _run_sync(*args, root=root)
        assert result.returncode == 2, result.stdout + result.stderr
        assert url in result.stderr and "GitHub" in result.stderr, result.stderr
    assert {f: (root / "colab" / f).read_bytes() for f in SYNCED} == before


def _working_tree_files():
    """The repository's files as `git clone` of a commit of the working tree would have them."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"cannot list the repository's files with `git ls-files` in {REPO}: {e}")
    files = [f for f in listed.decode("utf-8").split("\0") if f]
    # Listed but deleted in the working tree: not part of what would be committed.
    return sorted(f for f in files if (REPO / f).is_file())


def _repo_root_state():
    """What a build in the repository itself would leave there (build/, *.egg-info)."""
    return {p.name: p.stat().st_mtime_ns for p in REPO.iterdir()
            if p.name == "build" or p.name.endswith(".egg-info")}


def test_install_cell_installs_into_a_fresh_venv(tmp_path):
    """The install cell's command, run in a new venv with a copy of the repository as REPO.

    The new venv sees the project's already-installed dependencies through a
    .pth file (nothing but the build backend may be downloaded); tfvae and zoo
    must then import from the new venv, not from the checkout.
    """
    commands = {file: _install_command(_install_cell(_notebook(file)), "PYTHON", "REPO")
                for file in NOTEBOOKS}
    assert len({tuple(c) for c in commands.values()}) == 1, commands
    root_before = _repo_root_state()

    source = tmp_path / "tfvae-src"
    for f in _working_tree_files():
        (source / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, source / f)
    assert (source / "pyproject.toml").is_file(), "pyproject.toml is not a repository file"

    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, f"`python -m venv` failed:\n{made.stdout}{made.stderr}"
    python = venv / "bin" / "python"
    purelib = pathlib.Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    assert purelib.is_relative_to(venv), purelib
    # The project's site-packages after the new venv's own: pip and imports see the installed
    # TensorFlow etc. as satisfied, while what pip installs into the new venv comes first.
    (purelib / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n",
                                             encoding="utf-8")

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    command = _install_command(_install_cell(_notebook(NOTEBOOKS[0])), python, source)
    installed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env,
                               timeout=300)
    assert installed.returncode == 0, (
        f"the install cell's command failed: {command}\n{installed.stdout}{installed.stderr}")

    dists = sorted(p.name.split("-")[0].lower() for p in purelib.glob("*.dist-info"))
    # pip and setuptools come with the venv; anything else would be a download.
    assert "tfvae" in dists and set(dists) <= {"pip", "setuptools", "tfvae"}, dists
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file())
    assert size < 100 * 2**20, (f"the new venv holds {size / 2**20:.0f} MB: were dependencies "
                                "downloaded?")

    probe = ("import importlib.metadata, json, tfvae, zoo.vae\n"
             "dist = importlib.metadata.distribution('tfvae')\n"
             "print(json.dumps({'tfvae': tfvae.__file__, 'zoo': zoo.vae.__file__,\n"
             "                  'version': tfvae.__version__,\n"
             "                  'metadata': importlib.metadata.version('tfvae'),\n"
             "                  'dist': str(dist.locate_file(''))}))\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    ran = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=outside,
                         env=env, timeout=300)
    assert ran.returncode == 0, f"importing the installed package failed:\n{ran.stdout}{ran.stderr}"
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    for key in ("tfvae", "zoo"):
        assert pathlib.Path(found[key]).resolve().is_relative_to(purelib.resolve()), (key, found)
    assert pathlib.Path(found["dist"]).resolve() == purelib.resolve(), found
    assert found["metadata"] == found["version"], found

    # pip built in the copy, never in the checkout.
    assert _repo_root_state() == root_before, (
        f"the install left build/ or *.egg-info in the checkout {REPO}")
