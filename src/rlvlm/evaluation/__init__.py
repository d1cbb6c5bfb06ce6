"""Playing episodes with a policy and summarising them."""

from rlvlm.evaluation.episodes import Episode, eval_seeds, run_episodes
from rlvlm.evaluation.metrics import summarize, wilson_interval
from rlvlm.evaluation.policies import OraclePolicy, Policy, RandomPolicy, Turn, load_policy

__all__ = [
    "Episode",
    "OraclePolicy",
    "Policy",
    "RandomPolicy",
    "Turn",
    "eval_seeds",
    "load_policy",
    "run_episodes",
    "summarize",
    "wilson_interval",
]
