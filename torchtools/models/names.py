"""The course's name classifier: Embedding -> GRU/LSTM/RNN -> Linear over the last layer's final hidden states."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


class NameClassifier(nn.Module):
    def __init__(self, vocabulary_size: int, classes: int, *, hidden: int = 100, layers: int = 2,
                 bidirectional: bool = True, cell: str = "gru"):
        super().__init__()
        self.directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocabulary_size, hidden, padding_idx=0)
        self.rnn = CELLS[cell](hidden, hidden, layers, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden * self.directions, classes)

    def forward(self, codes: Tensor, lengths: Tensor) -> Tensor:
        """codes (batch, time) right-padded, lengths (batch,) -> logits (batch, classes).

        A batch of equal lengths runs as one dense tensor; mixed lengths are packed, so padding never
        enters the recurrence and every name gets the result it would get alone.
        """
        embedded = self.embedding(codes.t())  # (time, batch, hidden): the layout the RNN kernels want
        if codes.shape[1] and bool((lengths != codes.shape[1]).any()):
            embedded = pack_padded_sequence(embedded, lengths.cpu(), enforce_sorted=False)
        _, final = self.rnn(embedded)
        if isinstance(final, tuple):  # LSTM: (h_n, c_n)
            final = final[0]
        # final: (layers * directions, batch, hidden); the last `directions` rows are the top layer's.
        return self.fc(torch.cat(list(final[-self.directions:]), dim=1))
