"""Per-seed results from Dassl logs (CoOp's command line) and the paper's tables from an output
tree (see textrefiner/cli/parse_test_res.py)."""
from textrefiner.cli.parse_test_res import main

if __name__ == "__main__":
    main()
