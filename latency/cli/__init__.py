"""Command-line tools of the latency package: etf-profile, etf-predict, etf-predictor-report."""
