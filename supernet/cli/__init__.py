"""Command-line tools of the supernet package: etf-space, etf-make-synthetic, etf-train, etf-eval."""
