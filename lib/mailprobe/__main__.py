"""``python -m mailprobe``: the same as the ``mailprobe`` command."""

import sys

from mailprobe.cli import main

sys.exit(main())
