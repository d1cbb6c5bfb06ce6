"""ALFWorld: the embodied household tasks, on the alfworld package's text engine.

``engine`` drives the package's engine and expert, ``generate`` makes games offline from the
floor plans it ships, ``env`` is the gymnasium env with its task (prompt, parser, expert's
replies) and picture.
"""

from rlvlm.games.alfworld.env import ALFWorldEnv, ALFWorldTask, ALFWorldView

__all__ = ["ALFWorldEnv", "ALFWorldTask", "ALFWorldView"]
