"""etf: the shared base every package uses (one error type, atomic files) and the umbrella ``etf`` command."""
