"""Install TextRefiner for Dassl: the `textrefiner` library (trainers, configs and launchers' entry points included)."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_version() -> str:
    for line in (ROOT / "textrefiner" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("textrefiner/__init__.py has no __version__")


setup(
    name="textrefiner-dassl",
    version=read_version(),
    description=(
        "TextRefiner (AAAI 2025) as Dassl trainer plug-ins for CoOp, MaPLe and PromptKD, "
        "with a built-in engine for machines without Dassl"
    ),
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    # configs/ ships inside the package as textrefiner/configs (textrefiner.resources finds it)
    packages=find_packages(include=["textrefiner", "textrefiner.*"]) + ["textrefiner.configs"],
    package_dir={"textrefiner.configs": "configs"},
    package_data={
        "textrefiner.configs": ["*/*.yaml", "*/*/*.yaml"],
        # the paper's Table 1 and Table 2, read by parse_test_res.py --paper
        "textrefiner.results": ["paper_tables.csv"],
        # the testbed CLIP's weights and checksum (textrefiner/testbed/backbone.py registers them)
        "textrefiner.testbed": ["weights/*.pt", "weights/*.sha256"],
    },
    # the launchers and tools for an installed package, without this checkout (textrefiner/cli/console.py)
    entry_points={
        "console_scripts": [
            "textrefiner-train = textrefiner.cli.console:train",
            "textrefiner-table = textrefiner.cli.console:table",
            "textrefiner-sweep = textrefiner.cli.console:sweep",
            "textrefiner-paper = textrefiner.cli.console:paper",
            "textrefiner-demo = textrefiner.cli.console:demo",
            "textrefiner-launch = textrefiner.cli.console:launch",
        ],
    },
    install_requires=[
        # torch is deliberately not pinned: each platform gets its own build.
        "torch>=2.0",
        "torchvision",
        "yacs",
        # the sweep reads its YAML files itself (yacs also needs it)
        "pyyaml",
        "clip-anytorch>=2.6.0",
        "ftfy",
        "regex",
        "tqdm",
        "numpy",
        "pillow",
        "tabulate",
        "gdown",
    ],
    extras_require={
        # python -m textrefiner.sweep --executor slurm | submitit-local
        "sweep": ["submitit"],
        # parse_test_res.py --save table.png
        "plot": ["matplotlib"],
        # python -m textrefiner.paper (Figure 3's chart and the other figures)
        "paper": ["matplotlib"],
        "test": ["pytest", "submitit", "matplotlib"],
    },
)
