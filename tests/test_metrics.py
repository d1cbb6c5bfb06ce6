"""The per-update metrics: metrics.jsonl and accelerate's trackers."""

import importlib.util

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlvlm.config import load_config
from rlvlm.rl.metrics import MetricsLog, check_trackers, read_metrics


def test_every_update_goes_to_the_jsonl_file_and_tensorboard(tmp_path):
    config = load_config("tiny/numberline").to_dict()
    log = MetricsLog(tmp_path, log_with=["tensorboard"], config=config)
    log.write(1, {"charts/success_rate": 0.25, "losses/approx_kl": float("nan")})
    log.write(2, {"charts/success_rate": 0.75, "losses/approx_kl": 0.01})
    log.close()
    assert read_metrics(tmp_path / "metrics.jsonl")[0] == {
        "update": 1,
        "charts/success_rate": 0.25,
        "losses/approx_kl": None,  # not finite: null in the file, left out of the trackers
    }
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    success = [(e.step, e.value) for e in events.Scalars("charts/success_rate")]
    assert success == [(1, 0.25), (2, 0.75)]
    assert [e.step for e in events.Scalars("losses/approx_kl")] == [2]


def test_without_trackers_only_the_jsonl_file_is_written(tmp_path):
    log = MetricsLog(tmp_path, log_with=[])
    log.write(1, {"charts/success_rate": 0.5})
    log.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_trackers_are_checked_by_name_and_by_package():
    with pytest.raises(ValueError, match=r"unknown trackers \['neptune'\]"):
        load_config("tiny/numberline", ["log_with=[tensorboard,neptune]"])
    check_trackers(["tensorboard"])
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ValueError, match=r"log_with names wandb, which is not installed"):
            check_trackers(["wandb"])
