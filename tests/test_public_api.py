"""The public API: what `import efficient_bert` gives a user, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def mosaic_export(tmp_path_factory):
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    folder = tmp_path_factory.mktemp("export") / "hf"
    config = MosaicBertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64)
    MosaicBertForMaskedLM(config).save_pretrained(str(folder))
    return folder


def test_import_registers_the_auto_classes_without_loading_torch(mosaic_export):
    probe = ("import sys, efficient_bert\nlight = 'torch' not in sys.modules\n"
             "from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForSequenceClassification\n"
             f"path = {str(mosaic_export)!r}\n"
             "names = [type(AutoConfig.from_pretrained(path)).__name__,\n"
             "         type(AutoModelForMaskedLM.from_pretrained(path)).__name__,\n"
             "         type(AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)).__name__]\n"
             "print(light, *names)")
    assert run_python(probe) == "True MosaicBertConfig MosaicBertForMaskedLM MosaicBertForSequenceClassification"


def test_transformers_imported_first_is_registered_at_import(mosaic_export):
    probe = (f"from transformers import AutoModel\nimport efficient_bert\n"
             f"print(type(AutoModel.from_pretrained({str(mosaic_export)!r})).__name__)")
    assert run_python(probe) == "MosaicBertModel"


def test_every_public_name_resolves_to_what_its_module_defines():
    import importlib

    import efficient_bert

    for module, names in efficient_bert._MODULES.items():
        for name in names:
            assert getattr(efficient_bert, name) is getattr(importlib.import_module(module), name), name
    assert sorted(efficient_bert.__all__) == sorted(efficient_bert._EXPORTS)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        efficient_bert.Nope
    from efficient_bert.model import MosaicBertForMaskedLM  # Mosaic BERT from the model package

    assert MosaicBertForMaskedLM is efficient_bert.MosaicBertForMaskedLM
