"""Pretrain the testbed CLIP on the procedural world with CLIP's symmetric contrastive loss.

    python -m textrefiner.testbed.pretrain --out textrefiner/testbed/weights/testbed-clip.pt

Deterministic per ``--seed`` (model init and the data stream; same machine, same thread
count). Prints progress with an ETA; every ``--eval-every`` steps measures zero-shot
colour x shape accuracy (64 classes, "a photo of a {colour} {shape}.") on a fixed set,
overall and on the colour-shape pairs held out of pretraining; the curve goes to
``<out>.curve.csv``. The weights are written compact (fp16, used embedding rows only)
with a ``.sha256`` beside them. Every ``--save-every`` steps the run state goes to
``<out>.resume.pt``: after a crash or Ctrl-C the same command continues from there, with
the same result as an uninterrupted run.
"""
import argparse
import math
import os
import os.path as osp
import sys
import time
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms

from ..atomic import save_torch
from ..backbones.openai import import_clip
from ..hosts.encoders import TextEncoder
from ..safe_load import load_file
from .model import TESTBED_ARCH, compact_state_dict, expand_state_dict, write_compact
from .world import COLOURS_LIST, HELD_OUT_PAIRS, SHAPES, Scene, pretraining_pair, render, sample_rng

#: the eval stream never overlaps the training stream (another seed)
EVAL_STREAM_OFFSET = 1_000_003
ZERO_SHOT_TEMPLATE = "a photo of a {}."


def clip_preprocess(size: int = TESTBED_ARCH["image_resolution"]):
    """CLIP's evaluation transform, as the trainers' test pipeline (bicubic resize, normalise)."""
    return transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])


def colour_shape_classes() -> List[Tuple[str, str]]:
    return [(c, s) for c in COLOURS_LIST for s in SHAPES]


def zero_shot_set(seed: int, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of all 64 colour-shape classes (held-out pairs included) and their labels."""
    classes = colour_shape_classes()
    preprocess = clip_preprocess()
    images, labels = [], []
    for i in range(n):
        rng = sample_rng(seed + EVAL_STREAM_OFFSET, i)
        label = i % len(classes)
        colour, shape = classes[label]
        scene = Scene(shape, colour, ("plain", "striped", "dotted", "checkered")[rng.randint(4)],
                      ("small", "large")[rng.randint(2)], ("dark", "light")[rng.randint(2)])
        images.append(preprocess(render(scene, rng)))
        labels.append(label)
    return torch.stack(images), torch.tensor(labels)


@torch.no_grad()
def zero_shot_accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> Tuple[float, float, float, float]:
    """Accuracy in percent on all images, on the images of held-out pairs, and of the predicted
    class's colour and shape alone (which attribute the model has learned so far)."""
    clip = import_clip()
    classes = colour_shape_classes()
    text = encode_text(model, clip.tokenize([ZERO_SHOT_TEMPLATE.format(f"{c} {s}") for c, s in classes]))
    text = F.normalize(text.float(), dim=-1)
    preds = []
    for chunk in images.split(256):
        preds.append((F.normalize(model.encode_image(chunk).float(), dim=-1) @ text.t()).argmax(-1))
    preds = torch.cat(preds)
    correct = preds == labels
    held = torch.tensor([classes[int(y)] in set(HELD_OUT_PAIRS) for y in labels])
    colour = torch.tensor([classes[int(p)][0] == classes[int(y)][0] for p, y in zip(preds, labels)])
    shape = torch.tensor([classes[int(p)][1] == classes[int(y)][1] for p, y in zip(preds, labels)])
    return tuple(100.0 * v.float().mean().item() for v in (correct, correct[held], colour, shape))


def shipped_zero_shot(compact: dict, seed: int, images: int) -> dict:
    """Zero-shot accuracy of a compact weights file's content, as loaded for use (fp16 values in an fp32
    model), on the evaluation set of pretraining seed ``seed``: the figure the regression test checks."""
    clip = import_clip()
    model = clip.model.build_model(expand_state_dict(compact)).float().eval()
    acc, held, _, _ = zero_shot_accuracy(model, *zero_shot_set(seed, images))
    return {"zero_shot": round(acc, 2), "held_out_zero_shot": round(held, 2),
            "eval_set": {"seed": seed, "images": images, "classes": len(colour_shape_classes()),
                         "template": ZERO_SHOT_TEMPLATE}}


def encode_text(model, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` run only up to the longest caption's end token: the transformer is causal,
    so the features are the same and the work is a fraction of 77 positions'."""
    length = int(tokens.argmax(dim=-1).max()) + 1
    encoder = TextEncoder(model)
    return encoder(model.token_embedding(tokens[:, :length]), tokens[:, :length], truncate=False)


def batch(seed: int, start: int, size: int, preprocess) -> Tuple[torch.Tensor, List[str]]:
    pairs = [pretraining_pair(seed, i) for i in range(start, start + size)]
    return torch.stack([preprocess(img) for img, _ in pairs]), [c for _, c in pairs]


def param_groups(model, weight_decay: float):
    """CLIP's practice: no weight decay on gains, biases, embeddings and the logit scale (so token
    embedding rows pretraining never sees keep their initial values)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def main(argv: Sequence[str] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="weights file to write (with .sha256 and .curve.csv beside it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-images", type=int, default=640)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (results depend on it)")
    p.add_argument("--save-every", type=int, default=100,
                   help="steps between resume checkpoints (<out>.resume.pt; rerun the same command to continue)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    clip = import_clip()
    torch.manual_seed(args.seed)
    model = clip.model.CLIP(**TESTBED_ARCH).float().train()
    optim = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    preprocess = clip_preprocess()
    eval_images, eval_labels = zero_shot_set(args.seed, args.eval_images)
    used_rows = torch.zeros(TESTBED_ARCH["vocab_size"], dtype=torch.bool)
    curve = ["step,loss,zero_shot,held_out_zero_shot,colour,shape,elapsed_s"]
    start, loss_avg, first = time.time(), None, 0
    resume_path = args.out + ".resume.pt"
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "eval_every", "save_every")}
    if osp.isfile(resume_path):
        state = load_file(resume_path, "testbed pretraining resume file")
        if state["settings"] != settings:
            raise SystemExit(f"{resume_path} was written by a run with other settings ({state['settings']}); "
                             "delete it to start again, or rerun with those settings to continue it")
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        used_rows, curve, loss_avg, first = state["used_rows"], state["curve"], state["loss_avg"], state["step"]
        start -= state["elapsed"]
        print(f"Resuming from {resume_path} at step {first}", flush=True)
    print(f"Pretraining the testbed CLIP ({sum(p.numel() for p in model.parameters()):,} parameters) for "
          f"{args.steps} steps of {args.batch_size} pairs, seed {args.seed}", flush=True)
    for step in range(first, args.steps):
        images, captions = batch(args.seed, step * args.batch_size, args.batch_size, preprocess)
        tokens = clip.tokenize(captions)
        used_rows[tokens.flatten()] = True
        for group in optim.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(encode_text(model, tokens), dim=-1)
        logits = model.logit_scale.exp() * image_features @ text_features.t()
        target = torch.arange(len(captions))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        done = step + 1
        if done % args.eval_every == 0 or done == args.steps:
            model.eval()
            acc, held, colour, shape = zero_shot_accuracy(model, eval_images, eval_labels)
            model.train()
            elapsed = time.time() - start
            curve.append(f"{done},{loss_avg:.4f},{acc:.2f},{held:.2f},{colour:.2f},{shape:.2f},{elapsed:.0f}")
            eta = elapsed / done * (args.steps - done)
            print(f"step {done}/{args.steps}  loss {loss_avg:.3f}  zero-shot {acc:.1f}% (held-out pairs "
                  f"{held:.1f}%; colour right {colour:.1f}%, shape right {shape:.1f}%)  elapsed {elapsed / 60:.1f} min"
                  f"  eta {eta / 60:.1f} min", flush=True)
        if done % args.save_every == 0 and done < args.steps:
            save_torch({"settings": settings, "model": model.state_dict(), "optim": optim.state_dict(),
                        "used_rows": used_rows, "curve": curve, "loss_avg": loss_avg, "step": done,
                        "elapsed": time.time() - start}, resume_path)
    model.eval()
    acc, held, _, _ = zero_shot_accuracy(model, eval_images, eval_labels)
    argv = list(sys.argv[1:] if argv is None else argv)
    out_shown = osp.relpath(args.out) if not osp.relpath(args.out).startswith("..") else osp.basename(args.out)
    command = "python -m textrefiner.testbed.pretrain " + " ".join(out_shown if a == args.out else a for a in argv)
    meta = {"command": command, "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size,
            "threads": args.threads, "zero_shot_fp32": round(acc, 2), "held_out_zero_shot_fp32": round(held, 2),
            "minutes": round((time.time() - start) / 60, 1), "torch": str(torch.__version__)}
    compact = compact_state_dict(model, used_rows, meta)
    # the regression figure: the shipped (fp16, compact) weights on this run's evaluation set
    meta.update(shipped_zero_shot(compact, args.seed, args.eval_images))
    digest = write_compact(compact, args.out)
    with open(args.out + ".curve.csv", "w") as f:
        f.write("\n".join(curve) + "\n")
    if osp.isfile(resume_path):
        os.remove(resume_path)
    print(f"Wrote {args.out} ({osp.getsize(args.out) / 1e6:.1f} MB, sha256 {digest}); zero-shot {acc:.1f}%, "
          f"held-out pairs {held:.1f}% (as shipped, fp16: {meta['zero_shot']:.1f}%, {meta['held_out_zero_shot']:.1f}%), "
          f"{meta['minutes']} min")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
