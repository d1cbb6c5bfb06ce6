"""Where a reply's thought ends and its action begins, for any tokenizer.

The action part starts at the reply's last ``"action":`` key, found in the decoded text by
the same parser that reads the action, and is mapped back to tokens through the lengths of
decoded prefixes. No token ids are assumed, so a tokenizer whose tokens straddle the key
(``, "action``) works too: a straddling token counts as action.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from rlvlm.games.parsing import find_keys


def _decode(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    return tokenizer.decode(
        list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
    )


def action_start(tokenizer: PreTrainedTokenizerBase, reply_ids: Sequence[int]) -> int | None:
    """Index of the first action token of a reply, or None when it has no action key.

    It is the first token whose decoded prefix reaches past the start of the last action
    key; found by bisection, so it costs a few decodes per reply.
    """
    keys = find_keys(_decode(tokenizer, reply_ids), "action")
    if not keys:
        return None
    start = keys[-1][0]
    low, high = 0, len(reply_ids) - 1
    while low < high:
        middle = (low + high) // 2
        if len(_decode(tokenizer, reply_ids[: middle + 1])) > start:
            high = middle
        else:
            low = middle + 1
    return low
