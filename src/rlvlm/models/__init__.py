"""VLM policies: any supported Hugging Face family, tiny offline presets, value head, LoRA."""

from rlvlm.models.policy import Generation, Scores, VLMPolicy, load_policy
from rlvlm.models.presets import DEFAULT_PRESET, PRESETS

__all__ = ["DEFAULT_PRESET", "PRESETS", "Generation", "Scores", "VLMPolicy", "load_policy"]
