"""Multi-layer perceptrons for tables of numbers (the course's diabetes 8-6-4-1 network)."""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


def mlp(in_features: int, hidden: list[int], activation: str = "sigmoid", out_features: int = 1) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them, ending in raw logits.

    The course ends with a sigmoid and BCELoss; here the final sigmoid lives in the loss
    (BCEWithLogits) and in prediction, which is the same model with stabler gradients.
    """
    layers: list[nn.Module] = []
    widths = [in_features, *hidden]
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Linear(width_in, width_out), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(widths[-1], out_features))
    return nn.Sequential(*layers)
