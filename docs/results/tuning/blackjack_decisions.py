"""A Blackjack checkpoint's first decisions beside basic strategy's, on held-out deals.

    python docs/results/tuning/blackjack_decisions.py <checkpoint> [deals]

Prints how often the checkpoint (at the evaluation temperature, 0.2) hits where the oracle
hits, grouped by the player's total and the dealer's visible card.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np
import torch

import rlvlm
from rlvlm.evaluation.episodes import eval_seeds
from rlvlm.games.blackjack import hand_total
from rlvlm.models import load_policy
from rlvlm.models.training import set_precision


def main(checkpoint: str, deals: int = 300, batch: int = 50) -> None:
    policy = set_precision(load_policy(checkpoint).eval(), True)
    env = rlvlm.make("blackjack", image_size=policy.image_size)
    game, task = env.unwrapped, env.unwrapped.task
    images, views = [], []
    for seed in eval_seeds(deals):
        image, _ = env.reset(seed=seed)
        images.append(image)
        views.append(game.view())
    torch.manual_seed(0)
    groups: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for start in range(0, deals, batch):
        part = slice(start, start + batch)
        prompts = [task.prompt(view) for view in views[part]]
        replies = policy.generate(images[part], prompts, max_new_tokens=64, temperature=0.2)
        for view, text in zip(views[part], replies.texts, strict=True):
            total, _ = hand_total(view.player)
            dealer, _ = hand_total([view.dealer_up])
            hand = "11 or less" if total <= 11 else "12-16" if total <= 16 else "17 or more"
            key = f"player {hand}, dealer {'7 or more' if dealer >= 7 else '2-6'}"
            model_hits = task.parse(text, view).action == 1
            groups[key].append((model_hits, task.oracle_action(view) == 1))
    agree = sum(model == oracle for pairs in groups.values() for model, oracle in pairs)
    print(f"the same decision as basic strategy on {agree} of {deals} deals")
    for key, pairs in sorted(groups.items()):
        model, oracle = np.mean(pairs, axis=0)
        print(f"{key:<36} {len(pairs):>4} deals  hits {model:6.1%}  basic strategy {oracle:6.1%}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(arg) for arg in sys.argv[2:]))
