"""The offline testbed: a deterministic world, disjoint splits, held-out pairs, and the weights' loading path."""
import hashlib
import io
import json
import os

import pytest
import torch

from textrefiner.backbones.openai import import_clip
from textrefiner.testbed import backbone as testbed_backbone
from textrefiner.testbed import model as testbed_model
from textrefiner.testbed import datasets as testbed_datasets
from textrefiner.testbed.datasets import PATTERN_CLASSES, SHAPE_CLASSES
from textrefiner.testbed.pretrain import encode_text, param_groups
from textrefiner.testbed.world import HELD_OUT_PAIRS, pretraining_pair, random_scene, render, sample_rng


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_same_seed_same_bytes_other_seed_other_images():
    first = [png_bytes(pretraining_pair(0, i)[0]) + pretraining_pair(0, i)[1].encode() for i in range(20)]
    again = [png_bytes(pretraining_pair(0, i)[0]) + pretraining_pair(0, i)[1].encode() for i in range(20)]
    other = [png_bytes(pretraining_pair(1, i)[0]) for i in range(20)]
    assert first == again
    assert sum(a[:len(b)] == b for a, b in zip(first, other)) == 0


def test_held_out_pairs_never_appear_in_pretraining_data():
    held = set(HELD_OUT_PAIRS)
    scenes = [random_scene(sample_rng(0, i)) for i in range(5000)]
    assert not any((s.colour, s.shape) in held for s in scenes)
    assert len({(s.colour, s.shape) for s in scenes}) == 64 - len(held)  # everything else is seen
    # a caption names one object: its colour word and shape word together name the held-out pair
    words = [set(pretraining_pair(0, i)[1].rstrip(".").split()) for i in range(300)]
    assert not any({c, s} <= w for w in words for c, s in held)


def test_datasets_have_disjoint_halves_and_the_novel_half_holds_the_held_out_pairs():
    assert len(SHAPE_CLASSES) == len(set(SHAPE_CLASSES)) == 24 and len(set(PATTERN_CLASSES)) == 24
    base, new = SHAPE_CLASSES[:12], SHAPE_CLASSES[12:]
    held = [pair for pair in HELD_OUT_PAIRS if pair in SHAPE_CLASSES]
    assert not set(base) & set(new) and set(held) <= set(new) and not set(held) & set(base)


def test_generated_dataset_is_deterministic_in_coop_layout(tmp_path):
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        testbed_datasets.TestbedShapesSketch.load_records(str(root))
    files = [sorted((root / "testbed_shapes_sketch").rglob("*.png")) for root in roots]
    assert len(files[0]) == 24 * 50
    digest = [hashlib.sha256(b"".join(f.read_bytes() for f in fs[:40])).hexdigest() for fs in files]
    assert digest[0] == digest[1]
    split = json.loads((roots[0] / "testbed_shapes_sketch" / testbed_datasets.TestbedShapesSketch.split_file).read_text())
    assert split["train"] == [] and len({label for _, label, _ in split["test"]}) == 24
    assert testbed_datasets.TestbedShapes.classnames_ == testbed_datasets.TestbedShapesSketch.classnames_


def test_truncated_text_encoding_equals_clips():
    clip = import_clip()
    torch.manual_seed(0)
    model = clip.model.CLIP(**{**testbed_model.TESTBED_ARCH, "vision_layers": 1, "transformer_layers": 1}).eval()
    tokens = clip.tokenize(["a photo of a red star.", "a small striped blue hexagon on a dark background."])
    with torch.no_grad():
        assert torch.allclose(encode_text(model, tokens), model.encode_text(tokens), atol=1e-5)


def test_compact_weights_load_through_clip_build_model_with_checksum(tmp_path, monkeypatch):
    clip = import_clip()
    torch.manual_seed(0)
    model = clip.model.CLIP(**testbed_model.TESTBED_ARCH).eval()
    used = torch.zeros(testbed_model.TESTBED_ARCH["vocab_size"], dtype=torch.bool)
    used[clip.tokenize(["a photo of a red star."]).flatten()] = True
    path = str(tmp_path / "testbed-clip.pt")
    testbed_model.write_compact(testbed_model.compact_state_dict(model, used, {"seed": 0}), path)
    assert os.path.getsize(path) < 10e6
    monkeypatch.setitem(testbed_backbone.TESTBED_MODELS, "testbed", path)
    from textrefiner.backbones.resolver import load_clip

    loaded = load_clip("testbed")
    rows = used.nonzero().flatten()
    assert torch.equal(loaded.token_embedding.weight[rows], model.token_embedding.weight[rows].half().float())
    assert loaded.token_embedding.weight[~used].abs().sum() == 0
    assert torch.equal(loaded.visual.conv1.weight, model.visual.conv1.weight.half().float())
    with open(path, "r+b") as f:  # a damaged file is refused by its checksum
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="checksum"):
        load_clip("testbed")


def test_embeddings_are_not_weight_decayed_so_unseen_rows_stay_at_init():
    clip = import_clip()
    model = clip.model.CLIP(**{**testbed_model.TESTBED_ARCH, "vision_layers": 1, "transformer_layers": 1})
    groups = param_groups(model, 0.1)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(model.token_embedding.weight) in no_decay and id(model.positional_embedding) in no_decay
    assert id(model.visual.conv1.weight) not in no_decay


def test_sketch_style_differs_from_photo():
    rng_a, rng_b = sample_rng(3, 0), sample_rng(3, 0)
    scene = random_scene(sample_rng(3, 1))
    photo = render(scene, rng_a)
    sketch = render(type(scene)(**{**scene.__dict__, "style": "sketch"}), rng_b)
    assert png_bytes(photo) != png_bytes(sketch)


def test_pretraining_blocks_share_two_colours_and_cover_all_colours():
    from textrefiner.testbed.world import COLOUR_BLOCK, COLOURS_LIST, block_colours

    for block in range(3):
        colours = block_colours(0, block * COLOUR_BLOCK)
        assert len(set(colours)) == 2
        captions = [pretraining_pair(0, block * COLOUR_BLOCK + i)[1] for i in range(0, COLOUR_BLOCK, 4)]
        named = {c for text in captions for c in COLOURS_LIST if f" {c} " in f" {text} "}
        assert named <= set(colours)
    assert {c for b in range(64) for c in block_colours(0, b * COLOUR_BLOCK)} == set(COLOURS_LIST)


def test_pretraining_is_deterministic_and_resumes_after_a_crash_to_the_same_weights(tmp_path, monkeypatch):
    from textrefiner.testbed import pretrain

    args = ["--steps", "4", "--batch-size", "8", "--eval-every", "2", "--eval-images", "64", "--warmup", "1",
            "--save-every", "2", "--threads", "1"]
    whole = str(tmp_path / "whole.pt")
    pretrain.main(["--out", whole, *args])

    crashed = str(tmp_path / "crashed.pt")
    real_batch = pretrain.batch

    def crash_at_step_3(seed, start, size, preprocess):
        if start == 3 * size:
            raise KeyboardInterrupt
        return real_batch(seed, start, size, preprocess)

    monkeypatch.setattr(pretrain, "batch", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain.main(["--out", crashed, *args])
    assert os.path.isfile(crashed + ".resume.pt") and not os.path.exists(crashed)
    monkeypatch.setattr(pretrain, "batch", real_batch)
    pretrain.main(["--out", crashed, *args])  # the same command continues from step 2
    assert not os.path.exists(crashed + ".resume.pt")

    a = torch.load(whole, weights_only=True)
    b = torch.load(crashed, weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert torch.equal(a["token_embedding"], b["token_embedding"]) and torch.equal(a["token_rows"], b["token_rows"])
    assert a["meta"]["zero_shot"] == b["meta"]["zero_shot"]
    curves = [[row.split(",")[:6] for row in open(path + ".curve.csv").read().splitlines()] for path in (whole, crashed)]
    assert curves[0] == curves[1] and len(curves[0]) == 3  # header, step 2, step 4 (after the resume)
    with pytest.raises(SystemExit, match="other settings"):  # a resume file from other settings is refused
        torch.save({"settings": {"steps": 99}}, crashed + ".resume.pt")
        pretrain.main(["--out", crashed, *args])
