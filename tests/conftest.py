"""Shared test set-up."""

import os

import torch

# Parallel workers each get one thread: tiny models run no faster on more, and two workers
# with two threads each on two cores made model tests ten times slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
