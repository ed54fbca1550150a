"""``python -m efficient_bert ...`` is the ``efficient-bert`` command."""

import sys

from efficient_bert.tools.cli import main

sys.exit(main())
