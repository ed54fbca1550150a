"""Fail `make install` loudly if the environment is not the one the project pins."""

import sys
from importlib.metadata import version

EXPECTED = {"torch": "2.14.1", "mosaicml": "0.32.1", "mosaicml-streaming": "0.13.0"}

problems = [f"{name}=={version(name)} (expected {want})" for name, want in EXPECTED.items()
            if not version(name).startswith(want)]
if problems:
    sys.exit("install check failed: " + ", ".join(problems))

import composer  # noqa: E402,F401  (the imports themselves are the check)
import streaming  # noqa: E402,F401
import transformers  # noqa: E402
# the loggers a YAML can name: their own dependencies (protobuf) break at import, not at install
from composer.loggers import TensorboardLogger, WandBLogger  # noqa: E402,F401
import tensorboard  # noqa: E402,F401
import wandb  # noqa: E402,F401

import efficient_bert  # noqa: E402,F401

print(f"install ok: torch {version('torch')}, composer {version('mosaicml')}, "
      f"streaming {version('mosaicml-streaming')}, transformers {transformers.__version__}")
