"""The promises every host's trainers keep, written once: ``test_host_promises.py`` runs them for
every registered host, ``test_toy_host.py`` for a host added from outside the package.

A ``Case`` names a trainer, its config file and the overrides the tiny random CLIP needs.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence

import torch

from conftest import REPO, build, make_cfg, one_batch


@dataclass(frozen=True)
class Case:
    trainer: str
    config: Path
    opts: Sequence = field(default=())
    host_key: str = "COOP"

    def cfg(self, root, out, opts=(), seed=1):
        prec = [f"TRAINER.{self.host_key}.PREC", "fp32"]
        return make_cfg(root, self.trainer, str(out), config_file=self.config, opts=[*prec, *self.opts, *opts],
                        seed=seed)

    @property
    def is_textrefiner(self) -> bool:
        return self.trainer.endswith("_TextRefiner")

    def host(self) -> "Case":
        """The same case for the host trainer the TextRefiner variant extends."""
        trainer = self.trainer[: -len("_TextRefiner")]
        config = REPO / "configs" / "trainers" / trainer / self.config.name
        return Case(trainer, config if config.is_file() else self.config, self.opts, self.host_key)


def step(trainer, batch) -> dict:
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 1 << 30  # never the epoch's last batch: no lr step
    return trainer.forward_backward(batch)


def state(trainer) -> dict:
    return {f"{name}.{k}": v.detach().clone() for name in trainer.get_model_names()
            for k, v in trainer._models[name].state_dict().items() if torch.is_tensor(v)}


def eval_logits(trainer, image) -> torch.Tensor:
    trainer.set_model_mode("eval")
    with torch.no_grad(), trainer.precision.autocast():
        return trainer.evaluation_logits(image, trainer.classifier_text_features())


def only_trainable_tensors_change_and_each_gets_a_gradient(case: Case, root, out) -> None:
    trainer = build(case.cfg(root, out))
    frozen = {k: v.clone() for k, v in trainer.model.state_dict().items() if torch.is_tensor(v)}
    trainable = {f"{n}.{k}": p for n in trainer.get_model_names() for k, p in trainer._models[n].named_parameters()
                 if p.requires_grad}
    assert trainable, f"{case.trainer} registers nothing to train"
    losses = step(trainer, one_batch(trainer))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    for name, p in trainable.items():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), f"{name} received no finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} received a zero gradient"
    # what a step may change: the registered modules' parameters and buffers (a cache, BatchNorm statistics)
    registered = {id(t) for n in trainer.get_model_names() for m in [trainer._models[n]]
                  for t in (*m.parameters(), *m.buffers())}
    own = {k for k, t in (*trainer.model.named_parameters(), *trainer.model.named_buffers()) if id(t) in registered}
    moved = {k for k, v in trainer.model.state_dict().items() if k in frozen and not torch.equal(frozen[k], v)}
    assert moved <= own, f"tensors outside the registered modules changed: {sorted(moved - own)[:5]}"


def textrefiner_off_is_the_host_exactly(case: Case, root, out: Path) -> None:
    """An epoch of X_TextRefiner with ENABLED False (its steps, learning-rate schedule and epoch-end
    work, e.g. PromptSRC's averaging) and an evaluation equal X's, bit for bit."""
    opts = ["TEST.NO_TEST", True]
    host = build(case.host().cfg(root, out / "host", opts=opts))
    host.train()  # each run from its own seeding: the data order draws from the global generators
    off = build(case.cfg(root, out / "off", opts=[*opts, "TRAINER.TEXTREFINER.ENABLED", False]))
    off.train()
    assert off.refiner is None and off.get_model_names() == host.get_model_names()
    trained_host, trained_off = state(host), state(off)
    assert trained_host.keys() == trained_off.keys()
    assert all(torch.equal(v, trained_off[k]) for k, v in trained_host.items())
    image = one_batch(host)["img"]
    assert torch.equal(eval_logits(host, image), eval_logits(off, image))


def evaluation_once_equals_per_batch(case: Case, root, out) -> None:
    """``test()`` computes the classifier's text features once; every batch's logits equal those of
    features computed again for that batch."""
    trainer = build(case.cfg(root, out, opts=["DATALOADER.TEST.BATCH_SIZE", 16]))
    step(trainer, one_batch(trainer))
    images, outputs = [], []
    inference = trainer.model_inference
    trainer.model_inference = lambda image: images.append(image) or outputs.append(inference(image)) or outputs[-1]
    trainer.test(split="val")
    assert len(images) >= 2, "several batches are evaluated"
    del trainer.model_inference
    for image, output in zip(images, outputs):
        torch.testing.assert_close(output, eval_logits(trainer, image), rtol=0, atol=1e-5)


def save_load_round_trip(case: Case, root, out: Path) -> None:
    """A fresh build loading the saved modules (and the cache) gives the same logits, bit for bit."""
    trainer = build(case.cfg(root, out / "a"))
    batch = one_batch(trainer)
    step(trainer, batch)
    trainer.save_model(0, str(out / "a"))
    fresh = build(case.cfg(root, out / "b", seed=7))
    fresh.load_model(str(out / "a"), epoch=1)
    saved, loaded = state(trainer), state(fresh)
    assert saved.keys() == loaded.keys() and all(torch.equal(v, loaded[k]) for k, v in saved.items())
    assert torch.equal(eval_logits(trainer, batch["img"]), eval_logits(fresh, batch["img"]))


def two_seeded_runs_are_identical(case: Case, root, out: Path) -> None:
    runs: List[tuple] = []
    for name in ("a", "b"):
        trainer = build(case.cfg(root, out / name))
        batch = one_batch(trainer)
        runs.append(([step(trainer, batch) for _ in range(2)], state(trainer)))
    (losses_a, state_a), (losses_b, state_b) = runs
    assert losses_a == losses_b and all(torch.equal(v, state_b[k]) for k, v in state_a.items())


PROMISES = (only_trainable_tensors_change_and_each_gets_a_gradient, evaluation_once_equals_per_batch,
            save_load_round_trip, two_seeded_runs_are_identical)


def cases_of(hosts) -> List[Case]:
    """A case per trainer of each host (``textrefiner.protocols.hosts.Host``), on its base-to-novel config."""
    cases = []
    for host in hosts:
        for trainer in host.trainers:
            config = REPO / "configs" / "trainers" / trainer / f"{host.configs['base2new']}.yaml"
            cases.append(Case(trainer, config, (*host.tiny_opts, *host.demo_opts), host.config_key))
    return cases
