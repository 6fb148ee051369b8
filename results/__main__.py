"""`python -m results EXPERIMENT`: see results/cli.py."""

from .cli import main

raise SystemExit(main())
