#!/usr/bin/env bash
# Re-measures every performance table of bench/RESULTS.md on this machine, one job at a
# time (run it on a quiet machine), then regenerates the tables from the JSON.
#   bash bench/peers/install.sh        # once: PyTorch + pythae for the peer comparison
#   bash bench/run_performance.sh      # needs a trained vae in bench_runs/fashion_mnist/vae
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=bench/results
"$PY" -m bench.throughput --entry=vae,vae_iaf,iwae --vs-peer --steps=200 --repeats=5 --json --out=$OUT/throughput.json
"$PY" -m bench.throughput --entry=hvae --steps=200 --repeats=5 --json --out=$OUT/throughput.json
"$PY" -m bench.throughput --entry=vae --pipeline=live --steps=200 --json --out=$OUT/throughput_live.json
"$PY" -m bench.eval_speed --workdir=bench_runs/fashion_mnist/vae --num_samples=1000 \
    --max_examples=2000 --out=$OUT/eval_speed.json
"$PY" -m bench.startup --entry=vae --repeats=3 --out=$OUT/startup.json
"$PY" -m bench.scaling --out_dir=$OUT
"$PY" -m bench.report
