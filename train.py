"""Train or evaluate one run, with CoOp's command line (see textrefiner/cli/train.py)."""
from textrefiner.cli.train import main

if __name__ == "__main__":
    main()
