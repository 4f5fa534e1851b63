"""Where the shipped configs are, in a checkout and in an installed package.

A wheel carries ``configs/`` as package data (``textrefiner/configs``); a checkout (or an
editable install) reads the repository's ``configs/`` beside the package. Launchers,
the sweep and the demo find config files only through ``config_path``, so they work
from any folder.

    python -m textrefiner.resources            # prints the configs folder
    python -m textrefiner.resources trainers/CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml
    python -m textrefiner.resources --link-into CHECKOUT [--dry-run]

``--link-into`` makes these configs visible where the upstream scripts of a CoOp, MaPLe or
PromptKD checkout look (``configs/trainers/<TRAINER>/<CFG>.yaml`` and
``configs/datasets/<DATASET>.yaml``, relative to the checkout): one link per trainer folder
and per dataset file that the checkout lacks. The checkout's own configs stay as they are;
anything at the place of one of our TextRefiner trainers' folders that is not our link (the
user's own), or a broken link at any of our places, stops the command before anything changes.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, NamedTuple

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
#: the folder that holds the ``textrefiner`` package (put it on PYTHONPATH for child processes)
PACKAGE_PARENT = osp.dirname(PACKAGE_DIR)


def config_dir() -> str:
    """The folder holding ``trainers/``, ``datasets/`` and ``sweeps/`` configs."""
    installed = osp.join(PACKAGE_DIR, "configs")
    return installed if osp.isdir(installed) else osp.join(PACKAGE_PARENT, "configs")


def config_path(*parts: str) -> str:
    """Path of a shipped config file; a missing one fails naming what the folder holds."""
    path = osp.join(config_dir(), *parts)
    if not osp.isfile(path):
        folder = osp.dirname(path)
        while not osp.isdir(folder):  # an unknown trainer: list the trainers instead
            folder = osp.dirname(folder)
        found = sorted(f[:-5] if f.endswith(".yaml") else f for f in os.listdir(folder))
        raise FileNotFoundError(f"{path} not found; {folder} has: {', '.join(found) or 'nothing'}")
    return path


def child_env(env=None) -> dict:
    """``env`` (default: this process's) with this package importable by child processes."""
    env = dict(os.environ if env is None else env)
    paths = env.get("PYTHONPATH", "").split(os.pathsep) if env.get("PYTHONPATH") else []
    if PACKAGE_PARENT not in paths:
        env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + paths)
    return env


class Link(NamedTuple):
    path: str  # in the checkout
    target: str  # in this package's configs
    kind: str  # "trainers" (a folder) or "datasets" (a file)


def planned_links(checkout: str) -> List[Link]:
    """Every trainer folder and dataset file of ours, at the place a checkout's scripts look it up."""
    ours, theirs = config_dir(), osp.join(checkout, "configs")
    return [Link(osp.join(theirs, kind, name), osp.join(ours, kind, name), kind)
            for kind in ("trainers", "datasets") for name in sorted(os.listdir(osp.join(ours, kind)))
            if kind == "trainers" or name.endswith(".yaml")]


def _is_ours(link: Link) -> bool:
    return osp.islink(link.path) and osp.realpath(link.path) == osp.realpath(link.target)


def _conflicts(link: Link) -> bool:
    """Something at ``link.path`` that is not our link and stands where ours must go: anything at a
    TextRefiner trainer's folder (no upstream checkout has one), or a broken link (an earlier
    install's, say), which would hide the config from the scripts."""
    if _is_ours(link):
        return False
    return osp.basename(link.path).endswith("_TextRefiner") or not osp.exists(link.path)


def _described(link: Link, checkout: str) -> str:
    where = osp.relpath(link.path, checkout)
    if osp.islink(link.path):
        broken = "" if osp.exists(link.path) else "broken "
        return f"{where} (a {broken}link to {os.readlink(link.path)})"
    return f"{where} (your own {'folder' if osp.isdir(link.path) else 'file'})"


def link_into(checkout: str, dry_run: bool = False) -> int:
    """Link our configs into ``checkout/configs``; prints what it did and returns the exit status."""
    configs = osp.join(checkout, "configs")
    missing = [d for d in ("trainers", "datasets") if not osp.isdir(osp.join(configs, d))]
    if missing:
        print(f"Error: {checkout} has no configs/{missing[0]} folder: pass the root of your CoOp, MaPLe or PromptKD "
              "checkout (the folder holding train.py and configs/)", file=sys.stderr)
        return 1
    if osp.realpath(configs) == osp.realpath(config_dir()):
        print(f"Nothing to do: {configs} is this package's own configs folder")
        return 0
    links = planned_links(checkout)
    present = [link for link in links if osp.lexists(link.path)]
    conflicts = [link for link in present if _conflicts(link)]
    if conflicts:
        print(f"Error: {len(conflicts)} path(s) where this package's configs belong hold something else: "
              f"{', '.join(_described(c, checkout) for c in conflicts)}; remove or move them and rerun "
              f"(nothing was changed)", file=sys.stderr)
        return 1
    kept = [link for link in present if not _is_ours(link)]
    kept_trainers = [osp.basename(link.path) for link in kept if link.kind == "trainers"]
    done = len(present) - len(kept)
    new = [link for link in links if not osp.lexists(link.path)]
    for link in new:
        if not dry_run:
            os.symlink(link.target, link.path, target_is_directory=link.kind == "trainers")
        print(f"{'would link' if dry_run else 'linked'} {osp.relpath(link.path, checkout)} -> {link.target}")
    theirs = (f"; kept the checkout's own {len(kept_trainers)} trainer folder(s) ({', '.join(kept_trainers)}) "
              f"and {len(kept) - len(kept_trainers)} dataset file(s)") if kept else ""
    if not new:
        print(f"Nothing to do: {checkout} already sees this package's configs ({done} links){theirs}")
    else:
        verb = "would be created" if dry_run else "created"
        print(f"{len(new)} link(s) {verb} in {configs} ({done} already there){theirs}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m textrefiner.resources", description="Where this package's configs are.")
    parser.add_argument("parts", nargs="*", help="a file below the configs folder: print its path")
    parser.add_argument("--link-into", metavar="CHECKOUT",
                        help="link our trainer and dataset configs into CHECKOUT/configs, where the upstream "
                             "scripts of a CoOp, MaPLe or PromptKD checkout look them up")
    parser.add_argument("--dry-run", action="store_true", help="with --link-into: list the links, make none")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.link_into:
        if args.parts:
            parser.error("--link-into takes no file names")
        return link_into(args.link_into, args.dry_run)
    if args.dry_run:
        parser.error("--dry-run goes with --link-into")
    try:
        print(config_path(*args.parts) if args.parts else config_dir())
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
