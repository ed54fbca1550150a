"""``python -m efficient_bert.pretrain yamls/X.yaml [key=value ...]``: what main.py runs."""

from efficient_bert.pretrain.main import main
from efficient_bert.process import exit_process

exit_process(main())
