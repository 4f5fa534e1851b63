"""Command-line entry points (``python -m textrefiner.cli.train``; ``train.py`` wraps it)."""
