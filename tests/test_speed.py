"""Speed work changes no numbers: truncated text encoding, the vectorised cache update and
chunked prompt encoding equal their plain forms; the release-style baseline of the benchmark
computes what our path computes; the benchmark runs."""
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from benchmarks.release_style import LoopLocalCache, ReleaseCoOpCLIP, with_loop_update
from benchmarks.workloads import REFINER, RELEASE, build_trainer, class_names, synthetic_batch, train_step
from conftest import REPO, TINY, build, make_cfg, one_batch
from textrefiner.hosts.coop import CoOpCLIP, PromptLearner
from textrefiner.hosts.encoders import MIN_GROUP_SIZE, length_groups
from textrefiner.modeling import LocalCache, TextRefiner
from textrefiner.trainers.zsclip import ZeroshotModel

LOGIT_TOL = 1e-5  # max abs difference on logits (scale ~100), fp32
NAMES = class_names(12, 8)
MANY_NAMES = class_names(100, 8)  # enough for several length groups


def _full_text_features(model: CoOpCLIP) -> torch.Tensor:
    """All 77 positions, nothing cut."""
    pl = model.prompt_learner
    return F.normalize(model.text_encoder(pl(), pl.tokenized_prompts, truncate=False), dim=-1)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_truncated_text_encoding_equals_all_77_positions(tiny_clip, position):
    torch.manual_seed(0)
    model = CoOpCLIP(PromptLearner(MANY_NAMES, tiny_clip, n_ctx=4, class_token_position=position), tiny_clip).eval()
    pl = model.prompt_learner
    assert pl.text_length < 30 and pl(pl.text_length).shape[1] == pl.text_length
    assert len(length_groups(pl.eot_positions)) > 1, "prompts of different lengths are encoded apart"
    image = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        image_features = model.encode_image(image).global_feature
        truncated = model(image)
        full = model.logits(image_features, _full_text_features(model))
        # the encoder's own cut, from full-length prompts, gives the same features too
        own_cut = model.text_encoder(pl(), pl.tokenized_prompts)
    assert (truncated - full).abs().max() <= LOGIT_TOL
    torch.testing.assert_close(F.normalize(own_cut, dim=-1), model.text_features(), rtol=0, atol=1e-6)


def test_truncated_textrefiner_logits_equal_the_release_computation(tiny_clip):
    torch.manual_seed(1)
    pl = PromptLearner(MANY_NAMES, tiny_clip, ctx_init="a photo of a")
    ours, release = CoOpCLIP(pl, tiny_clip).eval(), ReleaseCoOpCLIP(pl, tiny_clip).eval()
    head = TextRefiner(dim=64, token_dim=64).eval()
    torch.nn.init.normal_(head.aggregation.linear.weight, std=0.5)  # make the refinement matter
    image = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        logits = ours(image, text_features=head.refine(ours.text_features()))
        expected = release(image, text_features=head.refine(release.text_features()))
    assert (logits - expected).abs().max() <= LOGIT_TOL


@pytest.mark.parametrize("chunk_size", [0, 7])
def test_length_groups_cover_every_prompt_once_and_reach_its_eot(chunk_size):
    eot = [6 + (i * 7) % 12 for i in range(150)]
    groups = length_groups(eot, chunk_size)
    assert sorted(i for members, _ in groups for i in members) == list(range(150))
    assert all(length == max(eot[i] for i in members) + 1 for members, length in groups)
    sizes = [len(members) for members, _ in groups]
    if chunk_size:
        assert sizes == [7] * 21 + [3]
    else:
        assert len(groups) > 1 and min(sizes) >= MIN_GROUP_SIZE


def test_zero_shot_text_features_equal_clip_encode_text(tiny_clip):
    model = ZeroshotModel(tiny_clip, [f"a photo of a {name}." for name in NAMES])
    with torch.no_grad():
        expected = F.normalize(tiny_clip.encode_text(model.tokenized_prompts), dim=-1)
    torch.testing.assert_close(model.text_features(), expected, rtol=0, atol=1e-6)


def test_vectorised_cache_update_equals_the_release_loop():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cache = LocalCache(num_entries=12, dim=16, momentum=0.8)
    loop = with_loop_update(cache)
    # tokens near three entries plus scattered ones: several entries receive no token
    near = cache.entries[[2, 5, 9]].repeat_interleave(20, dim=0) * 4 + 0.5 * torch.randn(60, 16, generator=g)
    for step in range(3):
        tokens = torch.cat([near, torch.randn(4, 16, generator=g)]).reshape(4, 16, 16)
        before = cache.entries.clone()
        cache.update(tokens)
        loop.update(tokens)
        torch.testing.assert_close(cache.entries, loop.entries, rtol=1e-5, atol=1e-6)
        untouched = (cache.entries == before).all(dim=1)
        assert 0 < int(untouched.sum()) < 12, "the case of entries without tokens is exercised"
    with pytest.raises(ValueError, match="release rule"):
        LoopLocalCache(update_rule="paper")


def _step_and_gradients(trainer):
    """The trainer's own step; the gradients stay on the parameters after the optimizer step."""
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 10  # no lr step
    losses = trainer.forward_backward(one_batch(trainer))
    modules = [trainer.model, trainer.refiner]
    grads = {n: p.grad.clone() for m in modules for n, p in m.named_parameters() if p.grad is not None}
    return losses, grads


def test_chunked_prompt_encoding_gives_the_same_loss_and_gradients(data_root, tmp_path):
    # each trainer is stepped right after its seeded build, so both draw the same batch
    plain = build(make_cfg(data_root, "CoOp_TextRefiner", str(tmp_path / "a")))
    losses, grads = _step_and_gradients(plain)
    chunk_opts = ["TRAINER.COOP.TEXT_CHUNK_SIZE", 3]
    chunked = build(make_cfg(data_root, "CoOp_TextRefiner", str(tmp_path / "b"), opts=chunk_opts))
    chunked_losses, chunked_grads = _step_and_gradients(chunked)
    assert chunked.model.text_encoder.chunk_size == 3 and plain.model.text_encoder.chunk_size == 0
    assert chunked_losses == pytest.approx(losses, rel=1e-6, abs=1e-6)
    assert set(grads) == set(chunked_grads) and "prompt_learner.ctx" in grads
    for name, grad in grads.items():
        atol = max(1e-6, 1e-5 * float(grad.abs().max()))  # float rounding of a differently blocked matmul
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-5, atol=atol, msg=name)


def test_chunks_are_checkpointed_so_backward_keeps_less(tiny_clip):
    """Chunking alone would keep every chunk's activations; checkpointing keeps inputs and outputs."""
    kept = {}
    for chunk_size in (0, 2):
        torch.manual_seed(0)
        model = CoOpCLIP(PromptLearner(NAMES, tiny_clip, n_ctx=4), tiny_clip, text_chunk_size=chunk_size)
        model.prompt_learner.requires_grad_(True)
        total = [0]

        def pack(t, total=total):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.text_features().sum().backward()
        kept[chunk_size] = total[0]
    assert kept[2] < kept[0] / 4


def test_release_style_baseline_computes_what_our_step_computes(tiny_clip):
    device = torch.device("cpu")
    batch = synthetic_batch(4, len(NAMES), 224, device)
    results = []
    for variant in (REFINER, RELEASE):
        torch.manual_seed(0)
        trainer = build_trainer(variant, tiny_clip, TINY, NAMES, device, "fp32")
        train_step(trainer, batch)
        results.append((trainer.model.prompt_learner.ctx.detach(), trainer.refiner.cache.entries))
    assert isinstance(trainer.model, ReleaseCoOpCLIP) and isinstance(trainer.refiner.cache, LoopLocalCache)
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)


def test_benchmark_quick_run_prints_its_tables(tmp_path):
    """What the benchmark prints and saves is complete and well formed. No time limit and no
    speed target is checked: on a loaded machine the run is slower and the ratios move, which
    is what the benchmark measures, not a defect."""
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "speed.py"), "--quick", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for heading in ("## Training step", "## Evaluation", "## Ratios", "## Where a CoOp_TextRefiner training step"):
        assert heading in text
    results = json.loads(out.read_text())
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| comparison")]
    ratio_lines = [line for line in rows if " ratio " in line]
    assert len(ratio_lines) == len(results["ratios"]) >= 10
    names = " ".join(r["name"] for r in results["ratios"])
    for comparison in ("CoOp_TextRefiner / CoOp", "MaPLe_TextRefiner / MaPLe", "ours / release-style",
                       "peak training memory", "TEXT_CHUNK_SIZE"):
        assert comparison in names
    for ratio in results["ratios"]:  # met says nothing here: tiny sizes on a shared machine
        assert ratio["value"] is None or math.isfinite(ratio["value"]), ratio
        # a line extrapolated from two noisy tiny timings can even fall below zero; measured ones cannot
        assert ratio["value"] is None or ratio["extrapolated"] or ratio["value"] >= 0, ratio
        assert ratio["met"] in (None, True, False), ratio
    assert all(r["value"] is not None for r in results["ratios"] if "time" in r["name"] or "images/s" in r["name"])
    assert all(r.get("peak_mb") is not None for r in results["train"])
