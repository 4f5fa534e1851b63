"""The MaPLe host and the MaPLe / MaPLe_TextRefiner trainers."""
import copy
import csv
import io
import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY, build, make_cfg, one_batch, run_train_py
from launch_helpers import LAUNCH_OPTS, SHOTS, launcher_env
from textrefiner.backbones.openai import import_clip
from textrefiner.framework import load_checkpoint
from textrefiner.hosts.coop import CoOpCLIP, PromptLearner
from textrefiner.hosts.encoders import ImageEncoder
from textrefiner.hosts.maple import MaPLeCLIP, MultiModalPromptLearner

CLASSNAMES = ["red circle", "dog", "a very long class name"]
MAPLE_YAML = REPO / "configs" / "trainers" / "MaPLe" / "vit_b16_c2_ep5_batch4_2ctx.yaml"
TR_YAML = REPO / "configs" / "trainers" / "MaPLe_TextRefiner" / "vit_b16_c2_ep5_batch4_2ctx.yaml"
# random:tiny has 2 layers per tower
TINY_OPTS = ["TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PREC", "fp32"]


def maple_cfg(root, out, trainer="MaPLe_TextRefiner", opts=(), seed=1):
    config = TR_YAML if trainer == "MaPLe_TextRefiner" else MAPLE_YAML
    return make_cfg(root, trainer, str(out), config_file=config, opts=[*TINY_OPTS, *opts], seed=seed)


def reference_image_tokens(clip_model, image, vision_prompts):
    """MaPLe's vision forward re-derived with CLIP's own blocks: all tokens after ln_post/proj (B, L, d)."""
    v = clip_model.visual
    b, n = image.shape[0], vision_prompts.shape[1]
    x = v.conv1(image).flatten(2).permute(0, 2, 1)
    x = torch.cat([v.class_embedding.expand(b, 1, -1), x], dim=1) + v.positional_embedding
    x = v.ln_pre(torch.cat([x, vision_prompts[0].expand(b, -1, -1)], dim=1)).permute(1, 0, 2)
    for i, block in enumerate(v.transformer.resblocks):
        if 0 < i < vision_prompts.shape[0]:
            x = torch.cat([x[:-n], vision_prompts[i].unsqueeze(1).expand(-1, b, -1)])
        x = block(x)
    return v.ln_post(x.permute(1, 0, 2)) @ v.proj


def reference_text(clip_model, prompts, tokenized, deep_prompts):
    """MaPLe's text forward re-derived with CLIP's own (77-token, masked) blocks."""
    n = deep_prompts.shape[1]
    x = (prompts + clip_model.positional_embedding).permute(1, 0, 2)
    for i, block in enumerate(clip_model.transformer.resblocks):
        if 0 < i <= deep_prompts.shape[0]:
            x = torch.cat([x[:1], deep_prompts[i - 1].unsqueeze(1).expand(-1, x.shape[1], -1), x[1 + n:]])
        x = block(x)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), tokenized.argmax(-1)] @ clip_model.text_projection


def test_prompts_are_injected_as_in_maple(deep_clip):
    torch.manual_seed(1)
    model = MaPLeCLIP(MultiModalPromptLearner(CLASSNAMES, deep_clip, n_ctx=2, depth=3), deep_clip)
    pl = model.prompt_learner
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref_tokens = reference_image_tokens(deep_clip, image, pl.vision_prompts())
        ref_text = reference_text(deep_clip, pl(), pl.tokenized_prompts, pl.deep_text_prompts())
        visual = model.encode_image(image, with_local=True)
        text = model.text_features()
    torch.testing.assert_close(visual.global_feature, ref_tokens[:, 0])
    torch.testing.assert_close(text, ref_text / ref_text.norm(dim=-1, keepdim=True))
    # local tokens: CLS + 4 patches, the 2 prompt positions left out
    assert visual.tokens.shape == (2, 5, 32) and visual.cls_attention.shape == (2, 4)
    torch.testing.assert_close(visual.tokens, ref_tokens[:, :5])
    assert pl.ctx.shape == (2, 64) and pl.deep_ctx.shape == (2, 2, 64) and pl.vision_prompts().shape == (3, 2, 96)
    # deeper couplings start as copies of one initialisation, the first one is drawn apart
    assert torch.equal(pl.couplings[1].weight, pl.couplings[2].weight)
    assert not torch.equal(pl.couplings[0].weight, pl.couplings[1].weight)


def test_context_init_keeps_remaining_words_fixed(tiny_clip):
    pl = MultiModalPromptLearner(CLASSNAMES, tiny_clip, n_ctx=2, ctx_init="a photo of a", depth=1)
    with torch.no_grad():
        embedded = tiny_clip.token_embedding(pl.tokenized_prompts)
    # "a photo" is learnable, "of a" stays: together the hand-written prompt
    assert torch.equal(pl(), embedded) and torch.equal(pl.ctx, embedded[0, 1:3])


def test_depth_one_text_side_equals_coop_with_the_same_context(tiny_clip):
    maple = MaPLeCLIP(MultiModalPromptLearner(CLASSNAMES, tiny_clip, n_ctx=4, depth=1), tiny_clip)
    coop = CoOpCLIP(PromptLearner(CLASSNAMES, tiny_clip, ctx_init="a photo of a"), tiny_clip)
    context = torch.randn(4, 128)
    with torch.no_grad():
        maple.prompt_learner.ctx.copy_(context)
        coop.prompt_learner.ctx.copy_(context)
        assert torch.equal(maple.text_features(), coop.text_features())


def test_text_reaches_vision_only_through_couplings(tiny_clip):
    torch.manual_seed(0)
    model = MaPLeCLIP(MultiModalPromptLearner(CLASSNAMES, tiny_clip, n_ctx=2, depth=2), tiny_clip)
    pl = model.prompt_learner
    image = torch.randn(2, 3, 224, 224)

    def features_after(change):
        with torch.no_grad():
            change()
            return model.encode_image(image).global_feature

    base = features_after(lambda: None)
    assert not torch.equal(base, features_after(lambda: pl.ctx.add_(1.0)))
    assert not torch.equal(features_after(lambda: None), features_after(lambda: pl.deep_ctx.add_(1.0)))
    for coupling in pl.couplings:
        torch.nn.init.zeros_(coupling.weight)
        torch.nn.init.zeros_(coupling.bias)
    zeroed = features_after(lambda: None)
    assert torch.equal(zeroed, features_after(lambda: (pl.ctx.add_(1.0), pl.deep_ctx.add_(1.0))))
    # zero vision prompts still take part in attention: MaPLe is not CLIP even then
    assert not torch.allclose(zeroed, ImageEncoder(tiny_clip.visual)(image).global_feature)


def test_no_vision_prompts_equals_plain_clip_forward(tiny_clip):
    model = MaPLeCLIP(MultiModalPromptLearner(CLASSNAMES, tiny_clip, n_ctx=0, depth=2), tiny_clip)
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = model.encode_image(image, with_local=True)
        plain = ImageEncoder(tiny_clip.visual)(image, with_local=True)
        assert model.prompt_learner.vision_prompts().shape == (2, 0, 128)
    assert ours.tokens.shape == plain.tokens.shape == (2, 50, 64)
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b)


def test_fp16_clip_keeps_the_release_dtypes(tiny_clip):
    half = copy.deepcopy(tiny_clip)
    import_clip().model.convert_weights(half)
    model = MaPLeCLIP(MultiModalPromptLearner(CLASSNAMES, half, depth=2), half)
    pl = model.prompt_learner
    # first-layer context and coupling in CLIP's fp16, the deeper ones in fp32 (cast when used)
    assert pl.ctx.dtype == pl.couplings[0].weight.dtype == torch.float16
    assert pl.deep_ctx.dtype == pl.couplings[1].weight.dtype == torch.float32
    logits = model(torch.randn(1, 3, 224, 224))
    logits.float().sum().backward()
    assert logits.dtype == torch.float16 and all(p.grad is not None for p in pl.parameters())


MANY_NAMES = CLASSNAMES + [f"{word} thing {i}" for i, word in enumerate(["odd", "blue green", "x"] * 25)]


@pytest.mark.parametrize("n_ctx,names,chunk", [(2, CLASSNAMES, 0), (4, CLASSNAMES, 0), (2, MANY_NAMES, 0),
                                               (2, MANY_NAMES, 7)])
def test_truncated_text_encoding_equals_full(deep_clip, n_ctx, names, chunk):
    """Each prompt up to its own EOT (in length groups, or chunks) equals all 77 positions."""
    torch.manual_seed(2)
    model = MaPLeCLIP(MultiModalPromptLearner(names, deep_clip, n_ctx=n_ctx, depth=4), deep_clip,
                      text_chunk_size=chunk)
    pl = model.prompt_learner
    image = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert pl(pl.text_length).shape[1] == pl.text_length < 77 and pl().shape[1] == 77
        features = model.encode_image(image).global_feature
        cut = model.logits(features, model.text_features(truncate=True))
        uncut = model.logits(features, model.text_features(truncate=False))
    assert (cut - uncut).abs().max() <= 1e-5


def test_chunked_text_encoding_gives_the_same_gradients(deep_clip):
    """TRAINER.MAPLE.TEXT_CHUNK_SIZE: checkpointed chunks, same features and prompt gradients."""
    grads = {}
    for chunk in (0, 7):
        torch.manual_seed(3)
        model = MaPLeCLIP(MultiModalPromptLearner(MANY_NAMES, deep_clip, n_ctx=2, depth=3), deep_clip,
                          text_chunk_size=chunk)
        assert model.text_encoder.chunk_size == chunk
        target = torch.randn(len(MANY_NAMES), deep_clip.text_projection.shape[1], generator=torch.Generator().manual_seed(4))
        (model.text_features() * target).sum().backward()
        grads[chunk] = {n: p.grad.clone() for n, p in model.prompt_learner.named_parameters() if p.grad is not None}
    assert set(grads[0]) == set(grads[7]) and {"ctx", "deep_ctx"} <= set(grads[0])
    for name, grad in grads[0].items():
        atol = max(1e-6, 1e-5 * float(grad.abs().max()))  # float rounding of a differently blocked matmul
        torch.testing.assert_close(grads[7][name], grad, rtol=1e-5, atol=atol, msg=name)


def test_text_chunk_size_reaches_the_maple_trainers(data_root, tmp_path):
    trainer = build(maple_cfg(data_root, tmp_path, trainer="MaPLe", opts=["TRAINER.MAPLE.TEXT_CHUNK_SIZE", 2]))
    assert trainer.model.text_encoder.chunk_size == 2


def test_invalid_depth_and_context_fail_with_the_fix(tiny_clip):
    with pytest.raises(ValueError, match=r"PROMPT_DEPTH.*between 1 and 2.*got 9"):
        MultiModalPromptLearner(CLASSNAMES, tiny_clip, depth=9)
    with pytest.raises(ValueError, match=r"N_CTX 5 .* 4 words of CTX_INIT"):
        MultiModalPromptLearner(CLASSNAMES, tiny_clip, n_ctx=5, depth=1)


def train_step(trainer):
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 5
    return trainer.forward_backward(one_batch(trainer))





def test_cache_survives_save_load_and_resume(data_root, tmp_path):
    first = build(maple_cfg(data_root, tmp_path / "a", opts=["TEST.NO_TEST", True]))
    first.train()  # one epoch: model.pth.tar-1 and the resume checkpoint
    saved = first.refiner.cache.entries.clone()
    checkpoint = load_checkpoint(str(tmp_path / "a" / "textrefiner" / "model.pth.tar-1"))
    assert torch.equal(checkpoint["state_dict"]["cache.entries"], saved)

    loaded = build(maple_cfg(data_root, tmp_path / "b", seed=7))
    loaded.load_model(str(tmp_path / "a"), epoch=1)
    assert torch.equal(loaded.refiner.cache.entries, saved)
    image = one_batch(first)["img"]
    with torch.no_grad():
        logits = [
            t.set_model_mode("eval") or t.model(image, text_features=t.classifier_text_features())
            for t in (first, loaded)
        ]
    assert torch.equal(*logits)

    # the same folder with a longer schedule resumes after epoch 1
    resumed = build(maple_cfg(data_root, tmp_path / "a", opts=["OPTIM.MAX_EPOCH", 2, "TEST.NO_TEST", True,
                                                               "TRAIN.EXTEND_EPOCHS", True]))
    seen = {}
    run_epoch = resumed.run_epoch
    resumed.run_epoch = lambda: (seen.setdefault("entries", resumed.refiner.cache.entries.clone()), run_epoch())
    resumed.train()
    assert resumed.start_epoch == 1 and torch.equal(seen["entries"], saved)


def test_one_epoch_through_train_py(data_root, tmp_path):
    out = tmp_path / "run"
    run_train_py([
        "--root", data_root, "--seed", 1, "--trainer", "MaPLe_TextRefiner", "--output-dir", out,
        "--dataset-config-file", REPO / "configs" / "datasets" / "synthetic.yaml", "--config-file", TR_YAML,
        "MODEL.BACKBONE.NAME", TINY, "OPTIM.MAX_EPOCH", 1, "DATASET.NUM_SHOTS", 2, "DATALOADER.NUM_WORKERS", 0,
        *TINY_OPTS,
    ])
    assert "Finish training" in (out / "log.txt").read_text()
    assert (out / "prompt_learner" / "model.pth.tar-1").exists() and (out / "textrefiner" / "model.pth.tar-1").exists()
    record = json.loads((out / "result.json").read_text())
    assert record["trainer"] == "MaPLe_TextRefiner" and 0 <= record["accuracy"] <= 100


def test_maple_launchers_write_results_the_table_reads(data_root, tmp_path):
    out = tmp_path / "output"
    for step in ("base2new_train", "base2new_test"):
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "maple" / f"{step}.sh"), "synthetic", "1", *LAUNCH_OPTS,
             *map(str, TINY_OPTS)],
            cwd=tmp_path, env=launcher_env(data_root, out), capture_output=True, text=True,
        )
        assert proc.returncode == 0, f"{step} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    tail = ("synthetic", f"shots_{SHOTS}", "MaPLe_TextRefiner", "vit_b16_c2_ep5_batch4_2ctx", "seed1")
    base, new = (json.loads(out.joinpath("base2new", split, *tail, "result.json").read_text())
                 for split in ("train_base", "test_new"))
    # MaPLe's configs keep the last epoch: the novel evaluation loads model.pth.tar-1
    assert (base["split"], new["split"], new["load_epoch"]) == ("base", "new", 1)
    proc = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(out), "--table", "base2new",
                           "--format", "csv"], capture_output=True, text=True, check=True)
    row = {r["Dataset"]: r for r in csv.DictReader(io.StringIO(proc.stdout))}["synthetic"]
    assert row["Method"] == "MaPLe_TextRefiner"
    assert float(row["Base"]) == pytest.approx(base["accuracy"], abs=1e-4)
    assert float(row["Novel"]) == pytest.approx(new["accuracy"], abs=1e-4)
