"""Classification evaluator printing Dassl's exact result lines."""
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np
import torch

from ...metrics import macro_f1_score


def compute_accuracy(output: torch.Tensor, target: torch.Tensor, topk=(1,)):
    """Top-k accuracies in percent, as ``dassl.metrics.compute_accuracy``."""
    maxk = max(topk)
    batch_size = target.size(0)
    if isinstance(output, (tuple, list)):
        output = output[0]
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]


class Classification:
    """Accumulates predictions; ``evaluate()`` prints ``=> result`` and the ``* key: value`` lines."""

    def __init__(self, cfg, lab2cname: Optional[Dict[int, str]] = None, **kwargs):
        self.cfg = cfg
        self._lab2cname = lab2cname
        self._per_class = cfg.TEST.PER_CLASS_RESULT
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true = []
        self._y_pred = []

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        pred = mo.max(1)[1]
        self._correct += int(pred.eq(gt).sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.cpu().tolist())
        self._y_pred.extend(pred.cpu().tolist())

    def evaluate(self) -> "OrderedDict[str, float]":
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        y_true, y_pred = np.asarray(self._y_true), np.asarray(self._y_pred)
        macro_f1 = 100.0 * macro_f1_score(y_true, y_pred)
        results = OrderedDict(accuracy=acc, error_rate=err, macro_f1=macro_f1)
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )
        if self._per_class:
            results["perclass_accuracy"] = self._print_per_class(y_true, y_pred)
        if self.cfg.TEST.COMPUTE_CMAT:
            self._save_confusion_matrix(y_true, y_pred)
        return results

    def _print_per_class(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        print("=> per-class result")
        accs = []
        for label in np.unique(y_true):
            mask = y_true == label
            total, correct = int(mask.sum()), int((y_pred[mask] == label).sum())
            accs.append(100.0 * correct / total)
            name = self._lab2cname[int(label)] if self._lab2cname else str(label)
            print(f"* class: {label} ({name})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {accs[-1]:.1f}%")
        mean_acc = float(np.mean(accs))
        print(f"* average: {mean_acc:.1f}%")
        return mean_acc

    def _save_confusion_matrix(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
        index = {label: i for i, label in enumerate(labels)}
        cmat = np.zeros((len(labels), len(labels)))
        for t, p in zip(y_true, y_pred):
            cmat[index[t], index[p]] += 1
        cmat = cmat / np.maximum(cmat.sum(axis=1, keepdims=True), 1)
        path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
        torch.save(cmat, path)
        print(f"Confusion matrix is saved to {path}")


def build_evaluator(cfg, **kwargs) -> Classification:
    if cfg.TEST.EVALUATOR != "Classification":
        raise ValueError(f"The built-in engine has the Classification evaluator only, not {cfg.TEST.EVALUATOR!r}")
    return Classification(cfg, **kwargs)
