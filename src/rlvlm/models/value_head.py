"""The critic: an MLP on the VLM's hidden state at the last prompt token."""

from __future__ import annotations

import torch
from torch import nn


class ValueHead(nn.Module):
    """Three linear layers, ``hidden -> hidden/4 -> hidden/8 -> 1`` (4096 -> 1024 -> 512 -> 1
    for a 7B model, as in the paper), always computed in float32.

    Its initial weights depend on ``seed`` alone, not on what drew from torch's generator
    before it was built: a vision stage trained by ``rlvlm pretrain`` or inside a run saves
    the same critic, so a run repeats whichever way its cached tower was made.
    """

    def __init__(self, hidden_size: int, seed: int = 0):
        super().__init__()
        first, second = max(hidden_size // 4, 64), max(hidden_size // 8, 32)
        self.hidden_size = hidden_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.mlp = nn.Sequential(
                nn.Linear(hidden_size, first),
                nn.ReLU(),
                nn.Linear(first, second),
                nn.ReLU(),
                nn.Linear(second, 1),
            )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return self.mlp(hidden.float()).squeeze(-1)
