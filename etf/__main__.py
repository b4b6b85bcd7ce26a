"""``python -m etf``: the umbrella ``etf`` command (see :mod:`etf.cli`)."""
from etf.cli import main

raise SystemExit(main())
