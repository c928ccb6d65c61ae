#!/usr/bin/env bash
# The Appendix issue's benchmark: the book's alternatives to amortized inference (appendix A.2,
# §2.9) against `vae` at equal data, and the inference gaps (§2.7) of the amortized entries.
#
#   bash bench/appendix.sh [RUNS_DIR [PART]]  # default RUNS_DIR: bench_runs/appendix
#
# PART: "all" (the default: steps 1-4), "flat" (steps 1-3) or "hvae" (step 4 only).
#
# 1. vae, vem, mcmc_em, wake_sleep (and vae_fullcov, vae_iaf for the gaps) train 10 epochs on the
#    first 10 000 Fashion-MNIST training images (vem's and mcmc_em's per-example state is a table
#    over the training set), validated and tested on the first 500 held-out images, test ELBO and
#    IS log p(x) with K = 1000 (bench.likelihood: train and eval seconds per entry);
# 2. AIS log p(x) of each (zoo.evaluate --estimator=ais, 16 chains x 500 steps, 100 test images)
#    and IS with K = 1000 on the same 100;
# 3. the gaps of vae, vae_fullcov, vae_iaf (zoo.gaps, its defaults, 100 test images);
# 4. hvae (its defaults: z_1 of 32 and z_2 of 16, bottom-up inference) trained the same way, and
#    its gaps (the per-example parameters are its posterior's bottom-up features).
# JSON goes to bench/results/appendix/ (not read by bench.report: its leaderboard takes full-data runs).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-bench_runs/appendix}"
PART="${2:-all}"
case "$PART" in all|flat|hvae) ;; *) echo "PART must be all, flat or hvae: got '$PART'" >&2; exit 2;; esac
PY="${PYTHON:-.venv/bin/python}"
export TF_CPP_MIN_LOG_LEVEL=2
mkdir -p bench/results/appendix
if [ "$PART" != hvae ]; then
ENTRIES=vae,vem,mcmc_em,wake_sleep,vae_fullcov,vae_iaf
"$PY" -m bench.likelihood --entries="$ENTRIES" --epochs=10 --max_train_examples=10000 \
  --max_eval_examples=500 --extra=--max_eval_examples=500 --num_samples=1000 --runs_dir="$RUNS" \
  --out=bench/results/appendix/likelihood.json
for entry in ${ENTRIES//,/ }; do
  "$PY" -m zoo.evaluate --workdir="$RUNS/fashion_mnist/$entry" --estimator=ais \
    --max_examples=100 --ais_chains=16 --ais_steps=500 > "$RUNS/$entry.ais.json"
  "$PY" -m zoo.evaluate --workdir="$RUNS/fashion_mnist/$entry" --estimator=is \
    --max_examples=100 --num_samples=1000 > "$RUNS/$entry.is100.json"
done
"$PY" - "$RUNS" <<'PY'
import json, sys
runs = sys.argv[1]
out = {}
for entry in ("vae", "vem", "mcmc_em", "wake_sleep", "vae_fullcov", "vae_iaf"):
    out[entry] = {}
    for estimator in ("ais", "is100"):
        with open(f"{runs}/{entry}.{estimator}.json", encoding="utf-8") as f:
            out[entry][estimator] = json.loads(f.read().strip().splitlines()[-1])
with open("bench/results/appendix/ais.json", "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
PY
for entry in vae vae_fullcov vae_iaf; do
  "$PY" -m zoo.gaps --workdir="$RUNS/fashion_mnist/$entry" --num_examples=100
  cp "$RUNS/fashion_mnist/$entry/gaps.json" "bench/results/appendix/gaps_$entry.json"
done
fi
if [ "$PART" != flat ]; then
  "$PY" -m bench.likelihood --entries=hvae --epochs=10 --max_train_examples=10000 \
    --max_eval_examples=500 --extra=--max_eval_examples=500 --num_samples=1000 --runs_dir="$RUNS" \
    --out=bench/results/appendix/likelihood_hvae.json
  "$PY" -m zoo.gaps --workdir="$RUNS/fashion_mnist/hvae" --num_examples=100
  cp "$RUNS/fashion_mnist/hvae/gaps.json" bench/results/appendix/gaps_hvae.json
fi
