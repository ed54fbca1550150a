"""Pretrain a BERT-style encoder: ``composer main.py yamls/demo.yaml [key=value ...]``.

One entry point for every model, algorithm and optimizer: all of them are chosen in the YAML and
assembled by efficient_bert.pretrain. Runs as one process with plain ``python main.py``.
"""

from efficient_bert.pretrain.main import main
from efficient_bert.process import exit_process

if __name__ == "__main__":
    exit_process(main())
