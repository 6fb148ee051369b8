"""Runners of the VaSSO reproduction suite: one training engine, tasks, models.

``python -m benchmarks TASK [options]`` trains one cell into its run directory;
``benchmarks.engine.train(cfg)`` does the same in-process.
"""
