"""Pretrain a BERT-style encoder: ``composer main.py yamls/demo.yaml [key=value ...]``.

One entry point for every model, algorithm and optimizer: all of them are chosen in the YAML and
assembled by efficient_bert.builders. Runs as one process with plain ``python main.py``.
"""

from efficient_bert.train import exit_process, main

if __name__ == "__main__":
    exit_process(main())
