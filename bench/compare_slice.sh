#!/usr/bin/env bash
# One GPU slice of the methods table (docs/compare.md): check the install, prepare the data the same way
# every time, run `efficient-bert compare run` within a time limit, and pack the records.
#
#   bench/compare_slice.sh CORPUS GLUE MINUTES [compare run arguments ...]      (from the repository root)
#
# CORPUS: a folder of .jsonl.zst/.json.gz files whose names contain "train" or "validation" (and "holdout":
# documents outside the train split, for RHO-loss's irreducible-loss model); GLUE: the GLUE task folders.
# The tokenizer is $TOKENIZER (results/compare/tokenizer holds the one the committed records were trained
# with), or one trained on the train files. The shards and every run go under $WORK
# (default runs/slice) and are reused by the next slice on the same machine; the records go to $RECORDS
# (default results/compare: commit them). With $OUT set, records.tgz (the records folder) lands there.
# Rows are $SEQ tokens (default 128, what the recipe and its cost table expect).
# Example, the next rows of the 3-minute table:
#   TOKENIZER=results/compare/tokenizer bench/compare_slice.sh /data/enwiki /data/glue 25 --hours 0.05 \
#       --methods baseline layer-stacking layer-drop
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,16p' "$0"; exit 2; }
[ -f main.py ] && [ -d yamls ] || { echo "error: run it from the repository root (it reads yamls/)" >&2; exit 2; }
corpus=$1 glue=$2 minutes=$3; shift 3
work=${WORK:-runs/slice}
records=${RECORDS:-results/compare}
seq=${SEQ:-128}
out=${OUT:-}
start=$(date +%s)
log() { echo "[slice $(( $(date +%s) - start ))s] $*"; }

python - <<'PY'
import torch, triton, composer, streaming, efficient_bert
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"[slice] {gpu}; torch {torch.__version__}, triton {triton.__version__}, composer {composer.__version__}")
PY

mkdir -p "$work"
tok=${TOKENIZER:-$work/tok}
if [ ! -f "$tok/tokenizer.json" ]; then
  log "tokenizer: 30,522 WordPiece ids from the train files of $corpus"
  python -m efficient_bert train-tokenizer --in_root "$corpus" --split train --vocab_size 30522 --out "$tok"
fi
shards() {  # convert_c4.py of the corpus files of the given splits into $work/mds
  python convert_c4.py --in_root "$corpus" --out_root "$work/mds" --splits "$@" \
    --tokenizer "$tok" --concat_tokens "$seq" --num_workers "$(nproc)"
}
if [ ! -f "$work/mds/validation/index.json" ]; then
  log "shards: rows of $seq tokens"
  rm -rf "$work/mds"
  shards train validation
fi

# RHO-loss's irreducible-loss model trains on documents the train split lacks: files named like *-holdout-*
# (convert_c4.py's own rule decides which files those are)
has_holdout=$(python -c 'import sys; from pathlib import Path; from efficient_bert.data.corpus import find_split_files
print(int(bool(find_split_files(Path(sys.argv[1]), "holdout"))))' "$corpus")
if [ "$has_holdout" = 1 ] && [ ! -f "$work/mds/holdout/index.json" ]; then
  log "shards: the holdout split"
  shards holdout
fi

log "compare, at most $minutes minutes"
status=0
python -m efficient_bert compare run --records "$records" --out "$work/compare" --data "$work/mds" \
  --tokenizer "$tok" --glue-dir "$glue" --time-limit "$minutes" "$@" || status=$?
log "compare exited $status"
if [ -n "$out" ]; then
  mkdir -p "$records"
  tar czf "$out/records.tgz" -C "$records" .
  log "records packed into $out/records.tgz"
fi
exit $status
