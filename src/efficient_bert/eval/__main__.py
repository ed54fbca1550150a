"""``python -m efficient_bert.eval yamls/finetune/glue.yaml key=value ...`` (= ``efficient-bert finetune``)."""

import sys

from efficient_bert.eval.suite import main

sys.exit(main())
