"""Shared test set-up."""

import os

import pytest
import torch

from rlvlm.models.vision import CACHE_ENV, VisionRecipe, cached_vision_checkpoint

# Parallel workers each get one thread: tiny models run no faster on more, and two workers
# with two threads each on two cores made model tests ten times slower. The commands that
# tests start (rlvlm in a subprocess, an experiment's cells) inherit the limit.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def numberline_reader(tmp_path_factory, worker_id):
    """tiny-llava with its vision tower taught to read NumberLine (100 steps at batch 32,
    seed 0, on one thread), trained once per session: the suite's workers share it through
    the package's own locked vision cache. Its checkpoint directory and report."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the folder that holds every worker's temporary folder
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers whether the suite runs in parallel or not
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(CACHE_ENV, str(root / "cache"))
            return cached_vision_checkpoint(
                "tiny-llava",
                ["numberline"],
                100,
                progress=False,
                recipe=VisionRecipe(batch_size=32),
            )
    finally:
        torch.set_num_threads(threads)
