"""The dataset readers' one error type: which dataset, what is wrong, where, and the fix.

Readers raise the first problem they meet; the doctor collects them all and prints
each one's ``line()``. Both use the same objects, so a message reads the same in a
training log and in the doctor's report.
"""
import shlex

DOCTOR_MODULE = "textrefiner.data.doctor"
DOWNLOAD_MODULE = "textrefiner.data.download_splits"


def doctor_command(root: str, dataset: str = "", arguments: str = "") -> str:
    """The doctor's command for ``dataset`` (``arguments``: the doctor's flags that name it instead)."""
    command = f"python -m {DOCTOR_MODULE} --root {shlex.quote(root)}"
    if arguments:
        return f"{command} {arguments}"
    return f"{command} --dataset {dataset}" if dataset else command


def download_command(root: str, dataset: str) -> str:
    return f"python -m {DOWNLOAD_MODULE} --root {shlex.quote(root)} --dataset {dataset}"


class DatasetError(RuntimeError):
    """A problem with one dataset's files under ``--root``."""

    def __init__(self, dataset: str, problem: str, path: str, fix: str, root: str, doctor_arguments: str = ""):
        self.dataset = dataset
        self.problem = problem
        self.path = path
        self.fix = fix
        self.root = root
        command = doctor_command(root, dataset, doctor_arguments)
        super().__init__(f"{self.line()}. Check the whole layout with `{command}`")

    def line(self) -> str:
        return f"{self.dataset}: {self.problem}: {self.path}. Fix: {self.fix}"
