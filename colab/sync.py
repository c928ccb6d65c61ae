"""Writes the repository's address into the Colab notebooks and colab/README.md.

The address is written in one place, the `Repository` entry of `[project.urls]`
in pyproject.toml. From it this script generates, for every colab/*.ipynb:

* the install cell's line `REPO = "git+<url>.git"  # ...`, which Colab's
  `pip install` reads;
* an "Open in Colab" badge as the first line of the first markdown cell;
* the notebook metadata `"colab": {"provenance": []}` (other metadata kept);

clears the code cells' outputs and execution counts, and puts the same badge
in each notebook's row of the table in colab/README.md.

Usage (from anywhere):

    python colab/sync.py           # rewrites the files that are out of date
    python colab/sync.py --check   # writes nothing; exits 1 listing them

Needs Python 3.11+ (tomllib) and nothing outside the standard library.
A fork changes the `Repository` URL in pyproject.toml and runs the script.
Files are rewritten only when their content changes, in the JSON style they
already have (indentation, key order, escaping, final newline), so a run on
up-to-date files leaves them byte for byte as they were.
"""

import argparse
import json
import pathlib
import re
import sys
import tomllib
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
BADGE_PREFIX = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
BADGE_TEMPLATE = (BADGE_PREFIX + "(https://colab.research.google.com/github/"
                  "{owner}/{name}/blob/main/colab/{file})")
# A badge as written by this script, for whatever repository: it is replaced, not duplicated.
BADGE_RE = re.compile(re.escape(BADGE_PREFIX)
                      + r"\(https://colab\.research\.google\.com/github/[^)\s]*\)")
# The install cell's assignment; the comment after it is rewritten too.
REPO_LINE_RE = re.compile(r'^REPO = "[^"\n]*"(?:[ \t]*#[^\n]*)?$', re.MULTILINE)
REPO_COMMENT = "  # pyproject.toml's Repository URL (colab/sync.py)."


def repository_url(pyproject):
    """The `[project.urls] Repository` entry of a pyproject.toml.

    Args:
        pyproject: Path of the pyproject.toml file.

    Returns:
        The URL without a trailing slash or `.git`.

    Raises:
        ValueError: If the file has no such entry.
    """
    with open(pyproject, "rb") as f:
        metadata = tomllib.load(f)
    url = metadata.get("project", {}).get("urls", {}).get("Repository")
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{pyproject} has no [project.urls] Repository entry")
    url = url.strip().rstrip("/")
    return url[:-len(".git")] if url.endswith(".git") else url


def github_owner_name(url):
    """The owner and name of a GitHub repository from its https URL.

    Args:
        url: A URL like `https://github.com/<owner>/<name>`.

    Returns:
        (owner, name).

    Raises:
        ValueError: If `url` is not the https address of a GitHub repository.
    """
    parsed = urllib.parse.urlsplit(url)
    parts = [p for p in parsed.path.split("/") if p]
    if (parsed.scheme != "https" or parsed.netloc.lower() not in ("github.com", "www.github.com")
            or len(parts) != 2 or parsed.query or parsed.fragment):
        raise ValueError(f"the Repository URL {url!r} in pyproject.toml is not a GitHub "
                         "repository address https://github.com/<owner>/<name>: Colab's "
                         "badges open notebooks from GitHub only")
    owner, name = parts
    return owner, name[:-len(".git")] if name.endswith(".git") else name


def badge(owner, name, file):
    """The "Open in Colab" badge (Markdown) of notebook `file` in colab/."""
    return BADGE_TEMPLATE.format(owner=owner, name=name, file=file)


def _json_style(text):
    """The json.dumps arguments (and final newline) that reproduce `text` exactly.

    Falls back to nbformat's own style (indent 1, sorted keys, unescaped
    Unicode, final newline) if no candidate reproduces it.
    """
    match = re.match(r"[{\[]\n( +)", text)
    indents = [len(match.group(1))] if match else []
    newline = "\n" if text.endswith("\n") else ""
    data = json.loads(text)
    for indent in indents + [1, 2, None]:
        for sort_keys in (True, False):
            for ensure_ascii in (False, True):
                style = {"indent": indent, "sort_keys": sort_keys, "ensure_ascii": ensure_ascii}
                if json.dumps(data, **style) + newline == text:
                    return style, newline
    return {"indent": 1, "sort_keys": True, "ensure_ascii": False}, "\n"


def _read(path):
    """A file's text, its line endings untranslated."""
    return pathlib.Path(path).read_bytes().decode("utf-8")


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _set_source(cell, text):
    """Sets a cell's source, as a list of lines (split at "\\n" only) if it was one."""
    if isinstance(cell["source"], list):
        lines = text.split("\n")
        text = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    cell["source"] = text


def sync_notebook(text, file, url, owner, name):
    """The up-to-date content of one notebook.

    Args:
        text: The notebook file's content.
        file: Its file name (e.g. `01_vae.ipynb`), for the badge.
        url: The repository URL (no `.git`).
        owner: The GitHub owner.
        name: The GitHub repository name.

    Returns:
        The new content, in the JSON style of `text`.

    Raises:
        ValueError: If the notebook has no markdown cell, or not exactly one
            `REPO = "..."` line in its code cells.
    """
    style, newline = _json_style(text)
    nb = json.loads(text)
    cells = nb.get("cells", [])

    repo_lines = [(cell, m) for cell in cells if cell.get("cell_type") == "code"
                  for m in REPO_LINE_RE.finditer(_source(cell))]
    if len(repo_lines) != 1:
        raise ValueError(f"{file}: expected one install line `REPO = \"...\"` in the code "
                         f"cells, found {len(repo_lines)}")
    cell, match = repo_lines[0]
    source = _source(cell)
    line = f'REPO = "git+{url}.git"{REPO_COMMENT}'
    _set_source(cell, source[:match.start()] + line + source[match.end():])

    markdown = [cell for cell in cells if cell.get("cell_type") == "markdown"]
    if not markdown:
        raise ValueError(f"{file}: no markdown cell to put the Colab badge in")
    source = _source(markdown[0])
    first, sep, rest = source.partition("\n")
    if BADGE_RE.fullmatch(first.strip()):
        source = badge(owner, name, file) + sep + rest
    else:
        source = badge(owner, name, file) + "\n\n" + source
    _set_source(markdown[0], source)

    for cell in cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None

    metadata = nb.setdefault("metadata", {})
    colab = metadata.get("colab")
    if not isinstance(colab, dict):
        colab = {}
    colab["provenance"] = []
    # Colab writes "colab" first; keep the order of the other keys.
    nb["metadata"] = {"colab": colab, **{k: v for k, v in metadata.items() if k != "colab"}}
    return json.dumps(nb, **style) + newline


def sync_readme(text, files, owner, name):
    """The up-to-date colab/README.md: a badge in each notebook's table row.

    A row starts `| [`<file>`](<file>)`; the badge follows the link in the same
    table cell (an existing badge is replaced).

    Args:
        text: The README's content.
        files: The notebook file names.
        owner: The GitHub owner.
        name: The GitHub repository name.

    Returns:
        The new content.

    Raises:
        ValueError: If a notebook has no row in the table.
    """
    lines = text.split("\n")
    for file in files:
        row_re = re.compile(r"^(\|\s*\[`" + re.escape(file) + r"`\]\(" + re.escape(file) + r"\))"
                            r"(?:\s*" + BADGE_RE.pattern + r")?(\s*\|)")
        rows = [i for i, line in enumerate(lines) if row_re.match(line)]
        if len(rows) != 1:
            raise ValueError(f"colab/README.md: expected one table row for {file} "
                             f"(starting `| [`{file}`]({file})`), found {len(rows)}")
        i = rows[0]
        lines[i] = row_re.sub(lambda m: f"{m.group(1)} {badge(owner, name, file)}{m.group(2)}",
                              lines[i], count=1)
    return "\n".join(lines)


def planned_contents(root):
    """{path: new content} for every file sync manages under `root`.

    Args:
        root: The repository's root directory.

    Returns:
        Dict from path to up-to-date content (also for files already up to date).

    Raises:
        ValueError: On a Repository URL that is not GitHub's, or a file that
            lacks what is to be updated.
    """
    root = pathlib.Path(root)
    url = repository_url(root / "pyproject.toml")
    owner, name = github_owner_name(url)
    colab = root / "colab"
    notebooks = sorted(colab.glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"no notebooks in {colab}")
    planned = {}
    for path in notebooks:
        planned[path] = sync_notebook(_read(path), path.name, url, owner, name)
    readme = colab / "README.md"
    planned[readme] = sync_readme(_read(readme), [p.name for p in notebooks], owner, name)
    return planned


def main(argv=None):
    """Command line: rewrites the out-of-date files, or (--check) lists them.

    Returns:
        0 if nothing is (or was) out of date or the files were rewritten, 1 with
        --check when some are out of date, 2 on an error.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing the files that are out of date")
    parser.add_argument("--root", type=pathlib.Path, default=ROOT,
                        help="the repository's root directory (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        planned = planned_contents(args.root)
    except (OSError, ValueError) as e:  # JSON and TOML decode errors are ValueErrors.
        sys.stderr.write(f"colab/sync.py: error: {e}\n")
        return 2
    stale = [path for path, content in planned.items() if _read(path) != content]
    root = args.root.resolve()
    shown = [str(p.resolve().relative_to(root)) for p in stale]
    if args.check:
        if stale:
            sys.stdout.write("Out of date (run `python colab/sync.py`):\n"
                             + "".join(f"  {s}\n" for s in shown))
            return 1
        sys.stdout.write("colab/: up to date.\n")
        return 0
    for path in stale:
        path.write_bytes(planned[path].encode("utf-8"))
    sys.stdout.write("".join(f"Updated {s}\n" for s in shown) if stale else "colab/: up to date.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
