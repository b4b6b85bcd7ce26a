"""Test equipment, not installed with the package: a loopback ADB peer and a benchmark_model stand-in."""
