"""Playing episodes with a policy and summarising them."""

from rlvlm.evaluation.api import ApiError, ApiPolicy, ApiSettings
from rlvlm.evaluation.episodes import Episode, Step, run_episodes
from rlvlm.evaluation.metrics import summarize, wilson_interval
from rlvlm.evaluation.policies import ModelPolicy, OraclePolicy, RandomPolicy, make_policy
from rlvlm.evaluation.protocol import Policy, Turn
from rlvlm.evaluation.replays import load_replays, save_replays
from rlvlm.seeds import eval_seeds

__all__ = [
    "ApiError",
    "ApiPolicy",
    "ApiSettings",
    "Episode",
    "ModelPolicy",
    "OraclePolicy",
    "Policy",
    "RandomPolicy",
    "Step",
    "Turn",
    "eval_seeds",
    "load_replays",
    "make_policy",
    "run_episodes",
    "save_replays",
    "summarize",
    "wilson_interval",
]
