"""Writes the tables of bench/RESULTS.md from the JSON files in bench/results/.

    python -m bench.report

Every `bench.likelihood` JSON file becomes one table (entry, dataset, epochs,
test ELBO, IS log-likelihood with K, bits/dim, training time) with its
command, date and machine, between the markers `<!-- tables:begin -->` and
`<!-- tables:end -->` of RESULTS.md; the rest of the file is left alone.
"""

import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def _num(value, digits=2):
    return "—" if value is None else f"{value:.{digits}f}"


def table(path):
    """Markdown for one results file."""
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    lines = [f"### `{os.path.relpath(path, os.path.dirname(HERE))}`", "",
             f"`{result['command']}` — {result['date']}, {result['machine']}", "",
             "| entry | dataset | epochs | n | test ELBO (nats) | test log p(x), IS (nats) | K "
             "| bits/dim | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(
            f"| `{row['entry']}` | {row['dataset']} | {row['epochs']} | {row['n']} "
            f"| {_num(row['elbo'])} ± {_num(row['elbo_stderr'])} "
            f"| {_num(row['log_likelihood'])} ± {_num(row['log_likelihood_stderr'])} "
            f"| {row['num_importance_samples']} | {_num(row['bits_per_dim'], 4)} "
            f"| {row['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main():
    path = os.path.join(HERE, "RESULTS.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        sys.exit(f"{path} lacks the markers {BEGIN} / {END}.")
    tables = "\n".join(table(p) for p in sorted(glob.glob(os.path.join(HERE, "results", "*.json"))))
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n{tables}{END}{tail}")


if __name__ == "__main__":
    main()
