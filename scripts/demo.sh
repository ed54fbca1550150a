#!/usr/bin/env bash
# `make demo`: tokenizer -> MDS shards -> tiny BERT pretraining -> SST-2 fine-tuning, CPU only, on the bundled sample.
# Each run writes a new directory under runs/, so nothing from an earlier run is overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${RUN_DIR:-runs/demo-$(date +%Y%m%d-%H%M%S)}
start=$(date +%s)
echo "== [1/4] WordPiece tokenizer on data/sample (train split) -> $run_dir/tokenizer"
python -m efficient_bert train-tokenizer --in_root data/sample --split train --vocab_size 4096 \
  --out "$run_dir/tokenizer"
echo "== [2/4] convert_c4.py: data/sample -> MDS rows of 128 tokens in $run_dir/mds"
python convert_c4.py --in_root data/sample --out_root "$run_dir/mds" --splits train validation \
  --tokenizer "$run_dir/tokenizer" --concat_tokens 128
echo "== [3/4] pretraining (yamls/demo.yaml)"
if command -v composer >/dev/null 2>&1; then launch=(composer main.py); else launch=(python main.py); fi
"${launch[@]}" yamls/demo.yaml variables.tokenizer="$run_dir/tokenizer" variables.data_local="$run_dir/mds" \
  variables.run_dir="$run_dir" run_name="$(basename "$run_dir")"
echo "== [4/4] fine-tuning on the bundled SST-2 slice, 3 seeds (yamls/finetune/demo.yaml)"
python -m efficient_bert finetune yamls/finetune/demo.yaml variables.run_dir="$run_dir"
echo "== demo finished in $(( $(date +%s) - start )) s; everything is under $run_dir"
