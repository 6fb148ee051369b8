"""Sweeps: expand an experiment into cells, run them (Slurm via submitit, local
processes, or in-process), track their states from the run directories.

Command line: ``python -m slurm plan|launch|status|retry|collect EXPERIMENT``
(see :mod:`slurm.cli` and docs/sweeps.md).
"""
