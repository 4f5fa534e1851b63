"""Speed and memory benchmarks (``python benchmarks/speed.py``); not part of the installed library."""
