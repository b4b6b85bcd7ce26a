"""Command-line tools of the search package: etf-search and etf-demo."""
