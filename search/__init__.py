"""Latency-constrained architecture search over the supernet (coordinate descent and baselines).

- ``search.algorithms.run_search(algo, accuracy_fn, latency_fn, target, budget=Budget(...), ...)``: one entry point
  for ``cd``, ``cd-block``, ``random``, ``evo``; returns a ``SearchResult`` (winner, history, cost split).
- ``search.objective``: ``LatencyFn`` / ``AccuracyFn`` types, the cached, budgeted ``Objective``.
- ``search.coordinate_descent`` / ``search.baselines``: the algorithms (pure, no I/O).
- ``search.log``: the durable, resumable ``search_log.csv``; ``search.pareto``: the plot.
- ``search.pipeline.run_job``: one ``etf-search`` job end to end (CLI: ``search.cli.search``); ``search.demo``: the flow.
"""
