"""Per-operator latency tables and the latency predictor fitted on them."""
