#!/usr/bin/env bash
# GPU checks and benchmarks, run on a lent CUDA machine whose python3 already has torch, pyarrow,
# numpy, tqdm, matplotlib and pytest (no kfp needed: the steps run as plain libraries/CLIs).
#
#   DATA_ROOT=/path/to/shared/data OUT=/tmp/gpu bash benchmarks/gpu.sh checks   # tests + benchmarks
#   DATA_ROOT=/path/to/shared/data OUT=/tmp/gpu bash benchmarks/gpu.sh quality  # Beauty runs
#
# Every part writes its own file under $OUT and has its own time limit, so one failure or
# timeout does not lose the others.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
DATA_ROOT=${DATA_ROOT:-../shared/data}
OUT=${OUT:-/tmp/dwlrec-gpu}
WORK=${WORK:-/tmp/dwlrec-gpu-work}
mkdir -p "$OUT" "$WORK"
part() {  # part NAME SECONDS CMD...: run CMD with a limit, its output to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "$name: rc=$? in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

case "${1:-checks}" in
checks)
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  } >"$OUT/env.txt" 2>&1
  part gpu_tests 120 $PY -m pytest -q -p no:cacheprovider -o addopts= tests/test_train.py \
    tests/test_evaluate.py tests/test_model_losses.py tests/test_metrics.py
  part train_bench 150 $PY benchmarks/train.py --device cuda --data-root "$DATA_ROOT" \
    --work "$WORK" --only ratio --only throughput --throughput-epochs 3 --ratio-rounds 10
  part eval_bench 45 $PY benchmarks/evaluate.py --users 138493 --items 26744 --threads 16
  part train_compile 90 $PY -m components.train --dataset "$WORK/ml-100k" \
    --weights "$WORK/ml-100k-stats/weights.json" --output "$WORK/compiled" --scheme dynamic \
    --epochs 3 --patience 0 --device cuda --compile --no-progress
  ;;
quality)
  if [ -z "${QUALITY_EPOCHS:-}" ] && [ -f "$OUT/train_bench.log" ]; then
    # as many epochs as fit the time limit, from the per-epoch time measured by `checks`
    QUALITY_EPOCHS=$($PY - "$OUT/train_bench.log" "${QUALITY_LIMIT:-150}" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
result = json.loads(text[text.index("{\n  \"benchmark\""):])
run = next(r for r in result["throughput"] if r["dataset"] == "amazon-beauty")
per_epoch = run["wall_seconds_incl_validation"] / run["epochs"]
print(max(5, min(200, int(0.8 * (float(sys.argv[2]) - 20) / per_epoch))))
EOF
    ) || QUALITY_EPOCHS=""
    echo "quality epochs: ${QUALITY_EPOCHS:-default}" | tee -a "$OUT/summary.txt"
  fi
  part beauty_quality "${QUALITY_LIMIT:-150}" $PY benchmarks/train.py --device cuda \
    --data-root "$DATA_ROOT" --work "$WORK" --skip-ml1m --only quality \
    --quality-epochs "${QUALITY_EPOCHS:-200}" --quality-patience 20
  ;;
compare)
  # weighting variants on one real dataset, trained side by side on the one GPU (one process per
  # variant and seed), then evaluated (full ranking, bootstrap CIs) and compared (paired
  # bootstrap lifts; several seeds of a variant are averaged per user)
  SOURCE=${SOURCE:-sequences} NAME=${NAME:-amazon-beauty} EPOCHS=${EPOCHS:-30}
  DEVICE=${DEVICE:-cuda} SCHEMES=${SCHEMES:-none fixed dynamic} SEEDS=${SEEDS:-0}
  MAX_LEN=${MAX_LEN:-50} DROPOUT=${DROPOUT:-0.5}
  part compare_prepare 120 bash -c "$PY -m components.ingest --source $SOURCE \
    --input $DATA_ROOT/$NAME --output $WORK/$NAME && \
    $PY -m components.stats --dataset $WORK/$NAME --output $WORK/$NAME-stats"
  for scheme in $SCHEMES; do
    for seed in $SEEDS; do
      timeout "${TRAIN_LIMIT:-250}" $PY -m components.train --dataset "$WORK/$NAME" \
        --weights "$WORK/$NAME-stats/weights.json" --output "$WORK/$NAME-$scheme-s$seed" \
        --scheme "$scheme" --loss ce --epochs "$EPOCHS" --patience 10 --max-len "$MAX_LEN" \
        --dropout "$DROPOUT" --seed "$seed" --length-buckets 50 --device "$DEVICE" \
        --threads "${THREADS:-0}" --no-progress >"$WORK/train-$scheme-s$seed.log" 2>&1 &
    done
  done
  wait
  evals=()
  for scheme in $SCHEMES; do
    dirs=()
    for seed in $SEEDS; do
      tail -n 14 "$WORK/train-$scheme-s$seed.log" | tr -d '\n ' >>"$OUT/summary.txt"
      echo >>"$OUT/summary.txt"
      $PY -m components.evaluate --dataset "$WORK/$NAME" --stats "$WORK/$NAME-stats" \
        --model "$WORK/$NAME-$scheme-s$seed" --output "$WORK/$NAME-eval-$scheme-s$seed" \
        --device "$DEVICE" >>"$OUT/compare_eval.log" 2>&1 &&
        dirs+=("$WORK/$NAME-eval-$scheme-s$seed")
    done
    [ ${#dirs[@]} -gt 0 ] && evals+=("$scheme=$(IFS=,; echo "${dirs[*]}")")
  done
  part compare_report 120 $PY -m components.report --eval "${evals[@]}" --baseline none \
    --output "$WORK/$NAME-report"
  tar czf "$OUT/compare-$NAME.tgz" -C "$WORK" "$NAME-report" "$NAME-stats" \
    $(cd "$WORK" && ls -d "$NAME"-eval-*/metrics.json "$NAME"-*-s*/*.json* 2>/dev/null)
  ;;
*)
  echo "usage: gpu.sh checks|quality|compare" >&2
  exit 2
  ;;
esac
cat "$OUT/summary.txt"
