"""``python -m archiver``."""

import sys

from .cli import main

sys.exit(main())
