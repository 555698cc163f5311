"""``python -m experiments.sweep STUDY [flags]``."""

import sys

from .cli import main

sys.exit(main())
