"""Load an HF export as a user with only torch and transformers would: efficient_bert, Composer and
streaming cannot be imported here. Writes what each Auto class and sentence-transformers compute on the
given sentences to OUT (torch.save).

    python -I load_export.py MLM_FOLDER CLASSIFIER_FOLDER SENTENCES_JSON OUT [--trust-remote-code]
"""

import importlib.abc
import json
import sys

BLOCKED = ("efficient_bert", "composer", "streaming")


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named '{name}' (blocked)", name=name)
        return None


sys.meta_path.insert(0, _Blocked())

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402


def main(folder: str, classifier_folder: str, sentences_file: str, out: str, *flags: str) -> None:
    kw = {"trust_remote_code": True} if "--trust-remote-code" in flags else {}
    sentences = json.loads(open(sentences_file).read())
    batch = AutoTokenizer.from_pretrained(folder)(sentences, padding=True, return_tensors="pt")
    models = {"mlm": AutoModelForMaskedLM.from_pretrained(folder, **kw).eval(),
              "base": AutoModel.from_pretrained(folder, **kw).eval(),
              "classifier": AutoModelForSequenceClassification.from_pretrained(classifier_folder, **kw).eval()}
    embedder = SentenceTransformer(folder, device="cpu", **kw)
    with torch.no_grad():
        results = {"batch": dict(batch), "classes": {k: type(m).__name__ for k, m in models.items()},
                   "mlm": models["mlm"](**batch).logits, "base": models["base"](**batch).last_hidden_state,
                   "classifier": models["classifier"](**batch).logits,
                   "embeddings": embedder.encode(sentences, convert_to_tensor=True),
                   "pooling": [type(module).__name__ for module in embedder]}
    results["blocked_imported"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    torch.save(results, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
