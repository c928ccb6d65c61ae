"""Writes the generated tables of bench/RESULTS.md from the JSON files in bench/results/.

    python -m bench.report

Sections, each between its markers `<!-- NAME:begin -->` / `<!-- NAME:end -->`
(the rest of RESULTS.md is left alone):
- `leaderboard`: one row per (entry, dataset) — test ELBO, IS log-likelihood
  with K, bits/dim from the `bench.likelihood` files (the row with the most
  epochs, then the newest file), examples/s from `throughput.json`;
- `throughput`: `bench.throughput` results, with the pythae peer where measured;
- `eval_speed`, `startup`, `scaling`: the other harnesses' JSON;
- `tables`: one table per `bench.likelihood` file, with its command.
"""

import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def _num(value, digits=2):
    return "—" if value is None else f"{value:.{digits}f}"


def _load(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _likelihood_files():
    """(path, result) of every bench.likelihood file (they have "rows")."""
    files = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        if isinstance(result, dict) and "rows" in result and "command" in result:
            files.append((path, result))
    return files


def table(path, result):
    """Markdown for one bench.likelihood file."""
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


def leaderboard():
    best = {}
    for path, result in _likelihood_files():
        for row in result["rows"]:
            key = (row["entry"], row["dataset"])
            rank = (row["epochs"], row["n"], result["date"])
            if key not in best or rank > best[key][0]:
                best[key] = (rank, row, os.path.basename(path))
    speed = _load("throughput.json") or {}
    lines = ["| entry | dataset | epochs | n | test ELBO (nats) | test log p(x), IS (nats) | K "
             "| bits/dim | train examples/s | source |", "|---|---|---|---|---|---|---|---|---|---|"]
    ordered = sorted(best.values(), key=lambda item: -(item[1]["log_likelihood"] or -1e30))
    for _, row, source in ordered:
        rate = speed.get(row["entry"], {})
        rate = (f"{rate['examples_per_sec']:.0f}" if rate.get("dataset") == row["dataset"]
                else "—")
        lines.append(
            f"| `{row['entry']}` | {row['dataset']} | {row['epochs']} | {row['n']} "
            f"| {_num(row['elbo'])} | {_num(row['log_likelihood'])} "
            f"| {row['num_importance_samples']} | {_num(row['bits_per_dim'], 4)} | {rate} "
            f"| `{source}` |")
    return "\n".join(lines) + "\n"


def throughput():
    rows = [r for name in ("throughput.json", "throughput_live.json")
            for r in sorted((_load(name) or {}).values(), key=lambda r: r["entry"])]
    if not rows:
        return "(no bench/results/throughput.json yet)\n"
    lines = ["| entry | pipeline | batch | steps/exec | examples/s | MFLOP/example | GFLOP/s "
             "| matmul peak GFLOP/s | efficiency | peer | peer examples/s | speedup | command |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| `{r['entry']}` | {r.get('pipeline', 'cached')} | {r['batch_size']} "
            f"| {r['steps_per_execution']} "
            f"| {r['examples_per_sec']:.0f} | {r['flops_per_example'] / 1e6:.2f} "
            f"| {r['gflops']:.1f} | {r['matmul_peak_gflops']:.1f} | {r['efficiency']:.2f} "
            f"| {r.get('peer', '—')} | {_num(r.get('peer_examples_per_sec'), 0)} "
            f"| {_num(r.get('speedup_vs_peer'))} | `{r['command']}` ({r['date']}) |")
    return "\n".join(lines) + "\n"


def eval_speed():
    results = _load("eval_speed.json")
    if not results:
        return "(no bench/results/eval_speed.json yet)\n"
    lines = ["| entry | n | K | IS log p(x) | IS seconds | K forward passes, seconds | ratio "
             "| target ≤ | met | command |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(results.items()):
        lines.append(f"| `{name}` | {r['n']} | {r['num_samples']} | {_num(r['log_likelihood'])} "
                     f"| {r['is_seconds']:.1f} | {r['forward_passes_seconds']:.1f} "
                     f"| {r['ratio']:.2f} | {r['target_ratio']:.1f} | {r['met']} "
                     f"| `{r['command']}` |")
    return "\n".join(lines) + "\n"


def startup():
    results = _load("startup.json")
    if not results:
        return "(no bench/results/startup.json yet)\n"
    lines = ["| entry | command → first training step, s | import tensorflow, s "
             "| saved_model.load, s | first served sample, s | load → first sample, s | command |",
             "|---|---|---|---|---|---|---|"]
    for name, r in sorted(results.items()):
        lines.append(f"| `{name}` | {r['command_to_first_step_seconds']:.1f} "
                     f"| {r['import_tensorflow_seconds']:.1f} | {r['saved_model_load_seconds']:.2f} "
                     f"| {r['first_sample_seconds']:.2f} | {r['load_to_first_sample_seconds']:.2f} "
                     f"| `{r['command']}` |")
    return "\n".join(lines) + "\n"


def _provenance(result, curve):
    """"`command` — date" of one curve (older files kept them at the top level)."""
    part = result[curve]
    return f"`{part.get('command', result.get('command'))}` — {part.get('date', result.get('date'))}"


def scaling():
    r = _load("scaling.json")
    if not r:
        return "(no bench/results/scaling.json yet)\n"
    out = [_provenance(r, 'batch_size'), "",
           "| batch size | examples/s | GFLOP/s | efficiency |", "|---|---|---|---|"]
    out += [f"| {x['batch_size']} | {x['examples_per_sec']:.0f} | {x['gflops']:.1f} "
            f"| {x['efficiency']:.2f} |" for x in r["batch_size"]["rows"]]
    fit = r["k"]["fit_k_ge_100"]
    out += ["", _provenance(r, 'k'), "",
            f"IS log p(x) of `vae` over {r['k']['n']} test images "
            f"(K ≥ 100: {fit['slope'] * 1000:.2f} s per 1000 samples, R² = {fit['r2']:.4f}):", "",
            "| K | seconds | log p(x) | peak RSS, MiB |", "|---|---|---|---|"]
    out += [f"| {x['k']} | {x['seconds']:.2f} | {_num(x['log_likelihood'])} "
            f"| {x['peak_rss_mib']:.0f} |" for x in r["k"]["rows"]]
    fit = r["flow_length"]["fit"]
    out += ["", _provenance(r, 'flow_length'), "",
            f"`vae_iaf` training, {r['flow_length']['examples']} examples per epoch "
            f"({fit['slope']:.2f} s per IAF step, R² = {fit['r2']:.4f}):", "",
            "| IAF steps | seconds/epoch | examples/s | MFLOP/example |", "|---|---|---|---|"]
    out += [f"| {x['num_flows']} | {x['epoch_seconds']:.2f} | {x['examples_per_sec']:.0f} "
            f"| {x['flops_per_example'] / 1e6:.2f} |" for x in r["flow_length"]["rows"]]
    out += ["", "![](results/scaling_batch_size.png) ![](results/scaling_k.png) "
            "![](results/scaling_flow_length.png)"]
    return "\n".join(out) + "\n"


SECTIONS = {"leaderboard": leaderboard, "throughput": throughput, "eval_speed": eval_speed,
            "startup": startup, "scaling": scaling,
            "tables": lambda: "\n".join(table(p, r) for p, r in _likelihood_files())}


def render(text):
    """Replaces the body of every section whose markers appear in `text`."""
    for name, make in SECTIONS.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = f"{head}{begin}\n{make()}{end}{rest.split(end, 1)[1]}"
    return text


def main():
    path = os.path.join(HERE, "RESULTS.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if "<!-- tables:begin -->" not in text:
        sys.exit(f"{path} lacks the markers <!-- tables:begin --> / <!-- tables:end -->.")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(text))


if __name__ == "__main__":
    main()
