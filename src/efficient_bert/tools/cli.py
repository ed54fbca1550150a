"""``efficient-bert`` command: one entry for the library's tools.

    efficient-bert train-tokenizer --in_root data/sample --out runs/tok
    efficient-bert convert --in_root data/sample --out_root runs/mds      (same as convert_c4.py)
    efficient-bert train yamls/demo.yaml max_duration=100ba              (same as main.py)
    efficient-bert calibrate --out runs/rst.json                         (reference-system time factor)
    efficient-bert extract-il --model IL_CKPT --tokenizer T --data_local MDS --out il.npz   (RHO-loss)
    efficient-bert finetune yamls/finetune/glue.yaml checkpoint=HF_OR_PT glue_dir=DIR results_dir=OUT
    efficient-bert export runs/x/ep0-ba1536-rank0.pt --out runs/x/hf-1536  (a checkpoint as an HF folder)
    efficient-bert report runs/baseline runs/layer-drop --out runs/report   (table + loss plots)
    efficient-bert compare --out runs/compare --data MDS --tokenizer T --hours 0.05 0.15   (methods at equal budget)
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

COMMANDS = {
    "train-tokenizer": "efficient_bert.data.tokenizer",
    "convert": "efficient_bert.data.convert",
    "train": "efficient_bert.pretrain.main",
    "calibrate": "efficient_bert.budget.calibrate",
    "extract-il": "efficient_bert.algorithms.rho_loss.extract_il",
    "finetune": "efficient_bert.eval.suite",
    "export": "efficient_bert.tools.export",
    "report": "efficient_bert.tools.report",
    "compare": "efficient_bert.tools.compare",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip() + "\n\ncommands: " + ", ".join(COMMANDS), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    result = importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
