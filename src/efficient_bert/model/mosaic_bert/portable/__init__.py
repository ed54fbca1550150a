"""Mosaic BERT in plain PyTorch and transformers: the two files an HF export ships beside its weights.

``configuration_mosaic_bert.py`` and ``modeling_mosaic_bert.py`` import only torch and transformers
(and each other, relatively), so ``AutoModel*.from_pretrained(export, trust_remote_code=True)`` works
where efficient_bert, Triton and Composer are not installed. Attention is SDPA over padded rows with the
same symmetric ALiBi bias; the library's fast model (unpadded, Triton kernels) computes the same
function and imports its pure-PyTorch parts from here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FILES = ("configuration_mosaic_bert.py", "modeling_mosaic_bert.py")
AUTO_MAP = {
    "AutoConfig": "configuration_mosaic_bert.MosaicBertConfig",
    "AutoModel": "modeling_mosaic_bert.MosaicBertModel",
    "AutoModelForMaskedLM": "modeling_mosaic_bert.MosaicBertForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_mosaic_bert.MosaicBertForSequenceClassification",
}


def add_to_export(folder: str | Path) -> None:
    """Copy the portable code into a saved model's ``folder`` and point its ``config.json``'s ``auto_map``
    at it."""
    folder = Path(folder)
    for name in FILES:
        shutil.copyfile(Path(__file__).with_name(name), folder / name)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["auto_map"] = AUTO_MAP
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
