"""Reinforcement learning: rollouts, advantages, the PPO loss and the trainer."""
