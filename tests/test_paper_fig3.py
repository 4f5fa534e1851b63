"""Figure 3 (``textrefiner.paper.fig3``): evaluation images/s per method, the files, the claim helper."""
import csv
import sys

import pytest
import torch

from textrefiner.backbones.resolver import load_clip
from textrefiner.errors import UserError
from textrefiner.paper import fig3

TINY = "random:tiny"
METHODS = ["CoOp", "CoOp_TextRefiner", "CoCoOp", "PromptSRC", "PromptKD", "PromptKD_TextRefiner"]


@pytest.fixture(scope="module")
def rows():
    return fig3.measure(TINY, device="cpu", quick=True, methods=METHODS)


def test_quick_rows_follow_the_whole_test_set_formula(rows):
    assert [r["method"] for r in rows] == METHODS
    for r in rows:
        assert (r["classes"], r["batch"], r["test_images"], r["device"][:4], r["precision"]) == (100, 10, 50000, "CPU ", "fp32")
        assert r["quick"] and r["repeats"] == 3 and r["warmup"] == 1
        assert r["per_batch_s"] > 0 and r["text_s"] >= 0
        # text features once per evaluation, then 5000 batches of 10
        assert r["images_per_s"] == pytest.approx(50000 / (r["text_s"] + 5000 * r["per_batch_s"]))
    by_method = {r["method"]: r for r in rows}
    assert by_method["CoCoOp"]["timed_images"] == 1 and "scaled from 1 image" in by_method["CoCoOp"]["note"]
    assert by_method["CoOp"]["timed_images"] == 10 and not by_method["CoOp"]["note"]


def test_write_gives_every_row_in_each_file(rows, tmp_path):
    paths = fig3.write(rows, str(tmp_path / "out"))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["fig3.md", "fig3.csv", "fig3.png"]
    md = open(paths[0]).read()
    for method in METHODS:
        assert f"| {method} " in md
    assert "CPU (" in md and "A CPU figure is not comparable with the paper's GPU one" in md
    assert "--quick" in md and "100 classes" in md
    with open(paths[1], newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == METHODS
    assert float(table[0]["images_per_s"]) == pytest.approx(rows[0]["images_per_s"])
    with open(paths[2], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_paper_column():
    assert fig3.paper_speeds() == {"CoCoOp": 20.45, "LLaMP": 1473.46, "PromptKD_TextRefiner": 12793.26}
    rows = [dict(method=m, images_per_s=v, per_batch_s=1.0, text_s=0.0, classes=1000, batch=100, timed_images=100,
                 test_images=50000, device="NVIDIA A100", precision="fp16", backbone="ViT-B/16", world="paper",
                 quick=False, warmup=1, repeats=3, note="")
            for m, v in (("CoCoOp", 30.0), ("PromptKD", 9000.0), ("PromptKD_TextRefiner", 8900.0))]
    md = fig3.markdown(rows)
    lines = {line.split(" |")[0]: line for line in md.splitlines() if line.startswith("| ")}
    assert lines["| CoCoOp"].endswith("| 20.45 |")
    assert lines["| PromptKD_TextRefiner"].endswith("| 0.989 | 12793.26 |")
    assert lines["| PromptKD"].endswith("|  |  |")
    assert lines["| LLaMP (not built here)"].endswith("| 1473.46 |")
    assert "compare the ratios" in md and "not comparable" not in md


def test_tr_cost_pairs_each_host_with_its_textrefiner_variant():
    rows = [dict(method="CoOp", images_per_s=100.0), dict(method="CoOp_TextRefiner", images_per_s=98.0),
            dict(method="MaPLe_TextRefiner", images_per_s=50.0), dict(method="PromptSRC", images_per_s=70.0)]
    assert fig3.tr_cost(rows) == {"CoOp": (100.0, 98.0, pytest.approx(0.98))}


def test_settings_of_the_worlds():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    paper = fig3.setting("paper", False, cpu)
    assert (paper.backbone, paper.teacher, paper.classes, paper.batch, paper.conditioned_images) == \
        ("random:ViT-B/16", "random:ViT-L/14", 1000, 100, 1)
    assert fig3.setting("paper", False, cuda).conditioned_images == 100  # a GPU times CoCoOp's whole batch
    testbed = fig3.setting("testbed", False, cpu)
    assert (testbed.backbone, testbed.teacher, testbed.classes, testbed.batch) == ("testbed", "testbed", 1000, 100)
    assert fig3.setting("ViT-B/16", True, cpu).teacher == "ViT-L/14"
    names = fig3.class_names(1000)
    assert len(set(names)) == 1000 and max(len(n.split()) for n in names) == 3


def test_precision_and_promptsrc_design_reach_the_config():
    s = fig3.setting(TINY, True, torch.device("cpu"))
    cfg = fig3.method_cfg("PromptSRC", s, 2, "bf16")
    assert cfg.TRAINER.NAME == "IVLP" and cfg.TRAINER.IVLP.PREC == "bf16"
    assert (cfg.TRAINER.IVLP.N_CTX_VISION, cfg.TRAINER.IVLP.N_CTX_TEXT) == (4, 4)
    assert cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION == cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT == 2  # capped by the layers
    assert fig3.method_cfg("MaPLe", s, 2, None).TRAINER.MAPLE.PREC == "fp16"  # the shipped config's


def test_promptsrc_row_evaluates_as_the_promptsrc_trainer():
    """PromptSRC's row is IVLP with PromptSRC's prompt design: the same logits as the PromptSRC trainer."""
    s = fig3.setting(TINY, True, torch.device("cpu"))
    clip_model = load_clip(TINY)
    layers = min(clip_model.transformer.layers, clip_model.visual.transformer.layers)
    names = fig3.class_names(5)
    ivlp_cfg = fig3.method_cfg("PromptSRC", s, layers, "fp32")
    src_cfg = ivlp_cfg.clone()
    src_cfg.defrost()
    src_cfg.TRAINER.NAME = "PromptSRC"
    for key in fig3.DEPTH_KEYS[1:]:
        src_cfg.TRAINER.PROMPTSRC[key] = ivlp_cfg.TRAINER.IVLP[key]
    src_cfg.freeze()
    image = torch.randn(2, 3, clip_model.visual.input_resolution, clip_model.visual.input_resolution)
    logits = []
    for cfg in (ivlp_cfg, src_cfg):
        torch.manual_seed(0)
        trainer = fig3.build(cfg, clip_model, names, torch.device("cpu"))
        with torch.inference_mode():
            logits.append(trainer.evaluation_logits(image, trainer.classifier_text_features()))
    assert type(trainer).__name__ == "PromptSRC"
    assert torch.equal(logits[0], logits[1])


def test_unknown_method_and_missing_matplotlib_are_user_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="choose from ZeroshotCLIP"):
        fig3.measure(TINY, device="cpu", quick=True, methods=["CoOp", "LLaMP"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    row = dict(method="CoOp", images_per_s=1.0, per_batch_s=1.0, text_s=0.0, classes=1, batch=1, timed_images=1,
               test_images=50000, device="CPU (x, 1 threads)", precision="fp32", backbone=TINY, world=TINY,
               quick=True, warmup=1, repeats=1, note="")
    with pytest.raises(UserError, match="pip install matplotlib"):
        fig3.write([row], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
