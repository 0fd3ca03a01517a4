"""CLAREL's sentence encoder (Oreshkin et al., CVPRW 2020): word vectors (frozen where given, else a trainable
embedding) -> 2 residual 1-D conv blocks (3x [conv k=3, BN, ReLU], no ReLU after the third; 1x1 conv + BN shortcut;
add, ReLU, MaxPool 2) -> BiLSTM -> masked mean over time -> Dropout -> Linear(2U, E); an instance's embedding is the
mean over its sentences.

Initialisation is the owner's (CLAREL re-initialises every conv and linear layer of its network); BN decay 0.95 and
eps 1e-6 follow the authors' TensorFlow code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class ResBlock(nn.Module):
    """3 convs k=3 with BN (ReLU after the first two) plus a 1x1 conv + BN shortcut, then ReLU and MaxPool 2."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False) for i in range(3)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(c_out, eps=1e-6, momentum=0.05) for _ in range(4))  # bns[3]: shortcut
        self.shortcut = nn.Conv1d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, L) -> (N, C_out, L // 2)
        h = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=False)):
            h = bn(conv(h))  # (N, C_out, L)
            h = F.relu(h) if i < 2 else h
        return F.max_pool1d(F.relu(h + self.bns[3](self.shortcut(x))), 2, 2)


class TextEncoder(nn.Module):
    """Instance embeddings (B, E) of token ids (B, K, L) (0: padding): the mean over K sentences' embeddings."""

    def __init__(
        self,
        vocab: int,
        word_dim: int,
        filters: int,
        units: int,
        embed: int,
        dropout: float,
        vectors: np.ndarray | None,
    ) -> None:
        super().__init__()
        if vectors is not None:
            self.words = nn.Embedding.from_pretrained(torch.as_tensor(vectors, dtype=torch.float32), freeze=True)
        else:
            self.words = nn.Embedding(vocab, word_dim, padding_idx=0)
        self.blocks = nn.Sequential(ResBlock(self.words.embedding_dim, filters), ResBlock(filters, 2 * filters))
        self.lstm = nn.LSTM(2 * filters, units, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * units, embed)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Instance embeddings (B, E) of tokens (B, K, L): mean over the K sentences."""
        b, k, length = tokens.shape
        tok = tokens.reshape(b * k, length)  # (M, L)
        h = self.blocks(self.words(tok).transpose(1, 2)).transpose(1, 2)  # (M, L', 2F) after two max-pools
        steps = ((tok != 0).sum(1) + 3).div(4, rounding_mode="floor").clamp(1, h.shape[1])  # (M,) valid L' steps
        # packed: the LSTM stops at each sentence's last word, so padding never enters its state
        packed = pack_padded_sequence(h, steps.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=h.shape[1])  # (M, L', 2U)
        feat = out.sum(1) / steps[:, None].to(out.dtype)  # (M, 2U): masked mean over time
        return self.fc(self.drop(feat.view(b, k, -1).mean(1)))  # (B, E)
