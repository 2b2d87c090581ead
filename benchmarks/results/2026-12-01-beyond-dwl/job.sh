#!/bin/bash
# job.sh CODE_DIR DATA STATS OUTROOT NAME SEED ARGS...  : train + evaluate one variant/seed (1 thread)
set -e
code=$1 data=$2 stats=$3 root=$4 name=$5 seed=$6; shift 6
cd "$code"; source /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1
m=$root/$name-s$seed; e=$root/eval-$name-s$seed
if [ ! -f "$m/model.pt" ]; then
  python -m components.train --dataset "$data" --weights "$stats/weights.json" --output "$m" --seed "$seed" \
     --threads 1 --exclude-seen --no-progress "$@" > "$root/$name-s$seed.log" 2>&1
fi
if [ ! -f "$e/metrics.json" ]; then
  python -m components.evaluate --dataset "$data" --stats "$stats" --model "$m" --output "$e" --device cpu >> "$root/$name-s$seed.log" 2>&1
fi
echo "done $name s$seed $(date +%T)"
