"""Resumable sweeps over a protocol's grid (datasets x shots x seeds x trainers): locally, one job
per GPU, or on a SLURM cluster through submitit. ``python -m textrefiner.sweep --help``."""
