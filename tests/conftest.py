"""Shared test set-up."""

import os

import torch

# Parallel workers each get one thread: tiny models run no faster on more, and two workers
# with two threads each on two cores made model tests ten times slower. The commands that
# tests start (rlvlm in a subprocess, an experiment's cells) inherit the limit.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
