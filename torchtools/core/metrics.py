"""Classification metrics computed from a whole evaluation set's outputs (plain torch, no sklearn)."""

from __future__ import annotations

import torch
from torch import Tensor


def confusion_matrix(predicted: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """Counts, rows = true class, columns = predicted class."""
    flat = targets.long() * num_classes + predicted.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(matrix: Tensor) -> list[float | None]:
    """Recall of each class (correct / samples of that class); None for a class with no samples."""
    totals = matrix.sum(dim=1)
    return [(matrix[i, i] / totals[i]).item() if totals[i] > 0 else None for i in range(len(matrix))]


def per_class_precision(matrix: Tensor) -> list[float | None]:
    """Precision of each class (correct / predictions of that class); None for a class never predicted."""
    predicted = matrix.sum(dim=0)
    return [(matrix[i, i] / predicted[i]).item() if predicted[i] > 0 else None for i in range(len(matrix))]


def roc_auc(scores: Tensor, targets: Tensor) -> float | None:
    """Area under the ROC curve: the chance a random positive outranks a random negative (ties count half)."""
    positives, negatives = int(targets.sum()), int((1 - targets).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(scores.double())
    positive_rank_sum = ranks[targets.bool()].sum().item()
    return (positive_rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _average_ranks(values: Tensor) -> Tensor:
    order = torch.argsort(values)
    sorted_values = values[order]
    ranks = torch.empty_like(values)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1  # 1-based average rank of the tie group
        start = end + 1
    return ranks


def binary_report(probabilities: Tensor, targets: Tensor, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall, F1, ROC AUC and the confusion matrix of a 0/1 classifier."""
    targets = targets.long()
    predicted = (probabilities > threshold).long()
    matrix = confusion_matrix(predicted, targets, 2)
    (tn, fp), (fn, tp) = matrix.tolist()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / max(len(targets), 1),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": roc_auc(probabilities, targets),
        "confusion_matrix": matrix.tolist(),
    }


def roc_curve(scores: Tensor, targets: Tensor) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) as the threshold falls through every distinct score."""
    order = torch.argsort(scores.double(), descending=True, stable=True)
    ordered, hits = scores.double()[order], targets.long()[order]
    positives, negatives = int(hits.sum()), len(hits) - int(hits.sum())
    true_positive, false_positive = torch.cumsum(hits, 0), torch.cumsum(1 - hits, 0)
    last_of_tie = torch.cat([ordered[1:] != ordered[:-1], torch.tensor([True])])
    tpr = (true_positive[last_of_tie].double() / max(positives, 1)).tolist()
    fpr = (false_positive[last_of_tie].double() / max(negatives, 1)).tolist()
    return [0.0, *fpr], [0.0, *tpr]
