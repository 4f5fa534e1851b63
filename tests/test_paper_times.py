"""benchmarks/paper_times.py: job seconds summed per protocol and method from a paper run's output."""
import pytest

from benchmarks.paper_times import job_seconds, main, markdown

LOG = """\
== table1, table2: 4 jobs
[1/4] base2new testbed_shapes 16-shot CoOp seed 1: running; log: runs/sweep_logs/a.log
[1/4] base2new testbed_shapes 16-shot CoOp seed 1: train_base epoch 3/10, ETA 9 s
[2/4] base2new testbed_shapes 16-shot CoOp seed 2: ok in 12 s (base2new_train, base2new_test); 2 jobs left, ETA 20 s
[1/4] base2new testbed_shapes 16-shot CoOp seed 1: ok in 14 s (base2new_train, base2new_test); 1 jobs left
[3/4] xd testbed_shapes 16-shot CoCoOp seed 1: ok in 79 s (xd_train, xd_test, xd_test)
[4/4] xd testbed_shapes 16-shot CoOp seed 1: skipped (already done)
[teacher 1/6] testbed_shapes seed 1: ok
"""


def test_sums_only_the_jobs_that_ran():
    times = job_seconds(LOG.splitlines())
    assert times == {("base2new", "CoOp"): [12, 14], ("xd", "CoCoOp"): [79]}
    text = markdown(times, "paper.log")
    assert "3 jobs ran, 105 s in all" in text
    # largest first, with the spread of a method's jobs and its share of the whole
    assert text.index("| xd | CoCoOp | 1 | 79 | 79 | 75% |") < text.index("| base2new | CoOp | 2 | 12-14 | 26 | 25% |")


def test_a_log_without_finished_jobs_is_an_error(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("[1/1] base2new d 16-shot CoOp seed 1: skipped (already done)\n")
    with pytest.raises(SystemExit, match="no finished job"):
        main([str(log)])
