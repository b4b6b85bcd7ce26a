"""Command-line tools of the deployment side: etf-export, etf-bench, etf-devices."""
