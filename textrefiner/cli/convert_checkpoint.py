"""Convert a release checkpoint folder (TextRefiner's CoOp variant, MaPLe) into this project's layout.

    python -m textrefiner.cli.convert_checkpoint SRC DST [--load-epoch N]

SRC is a release folder (``prompt_learner/`` + ``Memory/``, or ``MultiModalPromptLearner/``) or one
checkpoint file in it. DST, a new folder, gets ``<model name>/<file>`` in Dassl's format for every
checkpoint file of SRC (or the one named), holding only the trainable weights and buffers (no
frozen CLIP, no optimizer state). It is written under a temporary name and renamed when complete,
and an existing DST is never overwritten. ``--model-dir`` and ``MODEL.INIT_WEIGHTS`` also read
release folders directly; converting saves reading the release's whole-CLIP files every time.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

import torch

from textrefiner.atomic import atomic_folder
from textrefiner.checkpoints import UpstreamCheckpointError, find_release
from textrefiner.checkpoints.upstream import (
    ReleaseCheckpoint, checkpoint_files, head_folder, read_release, release_layout,
)

def read_all(src: str, epoch: Optional[int] = None) -> List[ReleaseCheckpoint]:
    """Every checkpoint of ``src`` (best first, then epochs ascending), or the one of ``epoch``."""
    if osp.isfile(src):
        release = find_release(src)
        if release is None:
            raise UpstreamCheckpointError(
                f'"{src}" is not a TextRefiner or MaPLe release checkpoint: nothing to convert'
            )
        return [release]
    names = [f"model.pth.tar-{epoch}"] if epoch is not None else checkpoint_files(head_folder(src))
    layout = release_layout(src, names[0]) if names else None
    if layout is None:
        raise UpstreamCheckpointError(
            f'"{src}" is not a release folder: expected Memory/ and prompt_learner/ (TextRefiner release) or '
            "MultiModalPromptLearner/ (MaPLe release); this project's own folders need no conversion"
        )
    return [read_release(src, layout, name) for name in names]


def write(releases: List[ReleaseCheckpoint], dst: str) -> None:
    """Write ``releases`` under ``dst`` in Dassl's layout; ``checkpoint`` names the last one written."""
    if osp.lexists(dst):
        raise FileExistsError(f'"{dst}" exists: name a new folder (the converter never overwrites)')
    with atomic_folder(dst) as tmp:
        for release in releases:
            for name, state_dict in release.state_dicts().items():
                folder = osp.join(tmp, name)
                os.makedirs(folder, exist_ok=True)
                state = {"state_dict": state_dict, "epoch": release.epoch, "optimizer": None, "scheduler": None,
                         "val_result": release.val_result}
                torch.save(state, osp.join(folder, release.file_name))
                with open(osp.join(folder, "checkpoint"), "w") as f:
                    f.write(release.file_name + "\n")


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", help="release folder, or one checkpoint file in it")
    p.add_argument("dst", help="new folder to write (never overwritten)")
    p.add_argument("--load-epoch", type=int, help="convert model.pth.tar-<N> only (default: every checkpoint file)")
    args = p.parse_args(argv)
    try:
        releases = read_all(args.src, args.load_epoch)
        write(releases, args.dst)
    except (UpstreamCheckpointError, FileExistsError, FileNotFoundError) as e:
        print(f"Error: {e}")
        raise SystemExit(1) from None
    layout = releases[0].layout
    print(f"Converted {args.src} ({layout.name}) into {args.dst}: "
          f"{', '.join(r.file_name for r in releases)} for {', '.join(sorted(releases[0].modules))}")
    print(f"Evaluate it with: python train.py --trainer {layout.fits.split()[0]} --model-dir {args.dst} "
          "[--load-epoch N] ... (the same config keys it was trained with)")


if __name__ == "__main__":
    main()
