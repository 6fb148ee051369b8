"""``python -m slurm ...``: see slurm/cli.py."""

import sys

from .cli import main

sys.exit(main())
