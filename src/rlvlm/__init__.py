"""Fine-tune vision-language models as decision-making agents with reinforcement learning."""

from rlvlm.games import GAMES, make

__version__ = "0.1.0"
__all__ = ["GAMES", "__version__", "make"]
