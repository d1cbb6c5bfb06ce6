"""Playing episodes with a policy and summarising them."""

from rlvlm.evaluation.episodes import Episode, eval_seeds, run_episodes
from rlvlm.evaluation.metrics import summarize, wilson_interval
from rlvlm.evaluation.policies import (
    ModelPolicy,
    OraclePolicy,
    Policy,
    RandomPolicy,
    Turn,
    make_policy,
)

__all__ = [
    "Episode",
    "ModelPolicy",
    "OraclePolicy",
    "Policy",
    "RandomPolicy",
    "Turn",
    "eval_seeds",
    "make_policy",
    "run_episodes",
    "summarize",
    "wilson_interval",
]
