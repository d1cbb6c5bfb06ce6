"""Baselines beside the VLM: players that are not language models."""
