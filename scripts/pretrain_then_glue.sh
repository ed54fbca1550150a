#!/usr/bin/env bash
# A short pretraining run, then GLUE fine-tuning of its HF export: the whole pipeline in one command.
#   GLUE_DIR=/data/glue STEPS=1000 scripts/pretrain_then_glue.sh runs/pipeline [finetune key=value ...]
# Pretrains Mosaic BERT-Base (yamls/pretrain/mosaic-bert-base.yaml, global batch 256) on the bundled
# sample for STEPS steps (GPU; PRETRAIN_ARGS adds overrides), then runs yamls/finetune/glue.yaml on the tasks present in GLUE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${1:?usage: scripts/pretrain_then_glue.sh RUN_DIR [finetune key=value ...]}
shift
if [ -e "$run_dir" ]; then echo "error: $run_dir exists; choose a new RUN_DIR" >&2; exit 2; fi
steps=${STEPS:-1000}
glue_dir=${GLUE_DIR:?set GLUE_DIR to a folder in the GLUE layout (CoLA/, SST-2/, ...)}
python -m efficient_bert train-tokenizer --in_root data/sample --split train --vocab_size 16384 \
  --out "$run_dir/tokenizer"
python convert_c4.py --in_root data/sample --out_root "$run_dir/mds" --splits train validation \
  --tokenizer "$run_dir/tokenizer" --concat_tokens 128
# NPROC: pretraining processes (default: the composer launcher's, every local GPU)
if command -v composer >/dev/null 2>&1; then launch=(composer ${NPROC:+-n "$NPROC"} main.py); else launch=(python main.py); fi
"${launch[@]}" yamls/pretrain/mosaic-bert-base.yaml variables.data_local="$run_dir/mds" \
  variables.tokenizer="$run_dir/tokenizer" variables.run_dir="$run_dir" max_duration="${steps}ba" \
  global_train_batch_size=256 device_train_microbatch_size=256 eval_interval="$((steps / 2))ba" \
  eval_subset_num_batches=20 save_interval="${steps}ba" train_loader.num_workers=4 eval_loader.num_workers=4 \
  console_log_interval="$((steps / 4))ba" ${PRETRAIN_ARGS:-}
# RTE, MRPC and STS-B start from the MNLI model; without MNLI data they start from the pretrained one
from_mnli=$([ -d "$glue_dir/MNLI" ] && echo "{}" || echo "{start_from: null}")
tasks=$(for t in CoLA:cola SST-2:sst2 MRPC:mrpc STS-B:stsb QQP:qqp MNLI:mnli QNLI:qnli RTE:rte WNLI:wnli; do
  name=${t##*:}; options="{}"; case $name in (rte|mrpc|stsb) options=$from_mnli;; esac
  if [ -d "$glue_dir/${t%%:*}" ]; then printf '%s: %s, ' "$name" "$options"; fi; done)
python -m efficient_bert finetune yamls/finetune/glue.yaml checkpoint="$run_dir/checkpoints/hf" \
  glue_dir="$glue_dir" results_dir="$run_dir/glue" "tasks={${tasks%, }}" "$@"
