"""CLIP loading (random and from files), the one resolver of backbone names, and our forward over
CLIP's modules."""
import ast
import copy
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from textrefiner.backbones import openai as openai_clip
from textrefiner.backbones import registered_backbones
from textrefiner.backbones.openai import import_clip
from textrefiner.backbones.resolver import load_clip, resolve
from textrefiner.errors import WeightsNotFoundError
from textrefiner.hosts.coop import tokenize
from textrefiner.hosts.encoders import ImageEncoder, TextEncoder
from textrefiner.testbed import backbone as testbed_backbone


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_clip_is_fixed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = load_clip("random:tiny")
    assert torch.equal(torch.rand(1), expected_next)
    b = load_clip("random:tiny")
    assert _same_weights(a, b)
    assert a.visual.proj.dtype == torch.float32 and not a.training


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="random CLIP architecture"):
        load_clip("random:ViT-H/99")
    with pytest.raises(ValueError, match="neither an OpenAI CLIP name"):
        load_clip("not-a-model")


def test_load_from_state_dict_file(tmp_path, tiny_clip):
    # OpenAI's files hold fp16 matmul weights; clip.build_model rounds through fp16 on load
    reference = copy.deepcopy(tiny_clip)
    import_clip().model.convert_weights(reference)
    reference.float()
    path = tmp_path / "tiny.pt"
    torch.save(reference.state_dict(), path)
    assert _same_weights(load_clip(str(path)), reference)
    # An OpenAI name with MODEL.BACKBONE.PATH goes through clip.load the same way
    assert _same_weights(load_clip("ViT-B/16", path=str(path)), reference)


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(openai_clip, "default_cache_dir", lambda: str(tmp_path))

    def offline(url, root):
        raise OSError("network unreachable")

    monkeypatch.setattr(import_clip().clip, "_download", offline)
    with pytest.raises(WeightsNotFoundError) as err:
        load_clip("ViT-B/16")
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "ViT-B-16.pt") in message and "MODEL.BACKBONE.PATH" in message
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_clip("ViT-B/16", path=str(tmp_path / "nope.pt"))


def _imported_names(folder) -> list:
    """Every module and name the files of ``folder`` import."""
    names = []
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names += [getattr(node, "module", None) or "", *(alias.name for alias in node.names)]
    return names


def test_the_testbed_registers_its_clip_and_the_resolver_finds_it_after_importing_only_the_resolver():
    shipped = registered_backbones()["testbed"]
    assert shipped.weights_file() == testbed_backbone.TESTBED_MODELS["testbed"]
    assert resolve("testbed").shipped is shipped and resolve("testbed").missing() == ""
    # the resolver knows the testbed only through the registry: it never imports the testbed
    imported = _imported_names(REPO / "textrefiner" / "backbones")
    assert "torch" in imported and not [name for name in imported if "testbed" in name]
    # a fresh interpreter: the resolver alone (textrefiner imports the testbed package, which registers)
    code = ("import sys; from textrefiner.backbones.resolver import resolve; "
            "print(type(resolve('testbed')).__name__, 'textrefiner.testbed.backbone' in sys.modules, "
            "'textrefiner.testbed.model' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.split() == ["RegisteredCLIP", "True", "False"]


def test_import_textrefiner_registers_the_testbed_without_torch():
    code = ("import sys, textrefiner; from textrefiner.backbones import registered_backbones; "
            "print(sorted(registered_backbones()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "['testbed'] False"


def test_resolver_kinds_and_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(openai_clip, "default_cache_dir", lambda: str(tmp_path))
    assert resolve("random:tiny").embed_dim() == 64 and resolve("random:tiny").missing() == ""
    assert resolve("ViT-L/14").embed_dim() == 768
    assert resolve("ViT-B/16").missing().startswith(f"{tmp_path / 'ViT-B-16.pt'} not found")
    assert resolve("ViT-B/16", path=str(tmp_path / "b16.pt")).missing().startswith(f"{tmp_path / 'b16.pt'} not found")
    assert resolve(str(tmp_path / "clip.pt")).missing() == "no such file"
    monkeypatch.setitem(testbed_backbone.TESTBED_MODELS, "testbed", str(tmp_path / "gone.pt"))
    assert resolve("testbed").missing().startswith(f"{tmp_path / 'gone.pt'} not found; ")
    with pytest.raises(WeightsNotFoundError, match="testbed.pretrain --out"):
        load_clip("testbed")


def test_old_import_path_still_works():
    from textrefiner import clip_backbone

    assert clip_backbone.load_clip is load_clip and clip_backbone.WeightsNotFoundError is WeightsNotFoundError


def test_local_tokens_and_attention(tiny_clip):
    torch.manual_seed(0)
    image = torch.randn(3, 3, 224, 224)
    enc = ImageEncoder(tiny_clip.visual)
    with torch.no_grad():
        plain = enc(image)
        local = enc(image, with_local=True)
        reference = tiny_clip.encode_image(image)
    n_patches = (224 // 32) ** 2
    assert plain.tokens is None and plain.cls_attention is None
    assert local.tokens.shape == (3, 1 + n_patches, 64)
    assert local.cls_attention.shape == (3, n_patches)
    torch.testing.assert_close(plain.global_feature, reference, rtol=0, atol=0)
    torch.testing.assert_close(local.global_feature, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(local.tokens[:, 0], reference, rtol=1e-5, atol=1e-5)
    # CLS -> patch weights are a softmax row without the CLS -> CLS entry
    assert torch.all(local.cls_attention >= 0) and torch.all(local.cls_attention.sum(-1) < 1)


def test_cls_attention_is_head_averaged_last_block_attention(tiny_clip):
    torch.manual_seed(1)
    image = torch.randn(2, 3, 224, 224)
    enc = ImageEncoder(tiny_clip.visual)
    with torch.no_grad():
        out = enc(image, with_local=True)
        x = enc.embed(image)
        for block in tiny_clip.visual.transformer.resblocks[:-1]:
            x = block(x)
        last = tiny_clip.visual.transformer.resblocks[-1]
        y = last.ln_1(x)  # (L, B, W)
        heads = last.attn.num_heads
        q, k, _ = torch.nn.functional.linear(y, last.attn.in_proj_weight, last.attn.in_proj_bias).chunk(3, dim=-1)
        L, B, W = q.shape
        q = q.reshape(L, B * heads, W // heads).transpose(0, 1)
        k = k.reshape(L, B * heads, W // heads).transpose(0, 1)
        weights = torch.softmax(q @ k.transpose(1, 2) / (W // heads) ** 0.5, dim=-1)
        expected = weights.reshape(B, heads, L, L).mean(1)[:, 0, 1:]
    torch.testing.assert_close(out.cls_attention, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("truncate", [True, False])
def test_text_encoder_equals_clip_encode_text(tiny_clip, truncate):
    tokens = tokenize(["a photo of a dog.", "a long description of a very small red circle on grey."])
    with torch.no_grad():
        ours = TextEncoder(tiny_clip)(tiny_clip.token_embedding(tokens), tokens, truncate=truncate)
        reference = tiny_clip.encode_text(tokens)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
