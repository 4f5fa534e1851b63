"""Every registered host's trainers keep the shared promises (``host_promises.py``): only their own
tensors train and each gets a gradient; evaluation computes text features once with the same
logits as per batch; save/load round-trips bit for bit; two seeded runs are identical; and every
X_TextRefiner with TextRefiner switched off is X exactly."""
import pytest

from host_promises import PROMISES, cases_of, textrefiner_off_is_the_host_exactly
from textrefiner.protocols.hosts import HOSTS

CASES = cases_of(HOSTS.values())
IDS = [c.trainer for c in CASES]


def test_every_registered_trainer_of_a_host_is_covered():
    from textrefiner.trainers import TRAINERS

    assert {c.trainer for c in CASES} == set(TRAINERS) - {"ZeroshotCLIP"}


@pytest.mark.parametrize("promise", PROMISES, ids=[p.__name__ for p in PROMISES])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_host_promise(case, promise, data_root, tmp_path):
    promise(case, data_root, tmp_path)


@pytest.mark.parametrize("case", [c for c in CASES if c.is_textrefiner], ids=[c.trainer for c in CASES if c.is_textrefiner])
def test_textrefiner_off_is_the_host_exactly(case, data_root, tmp_path):
    textrefiner_off_is_the_host_exactly(case, data_root, tmp_path)
