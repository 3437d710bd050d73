"""Token ids, labels and batches for Coconut training on a Hugging Face tokenizer.

Why its own file: the model is indifferent to where thoughts sit, but the cost is not — a batch
whose thoughts occupy n distinct columns costs n+1 passes. Padding each row on the left so that
its first `<|latent|>` lands on the same column as every other row's (the official collator's
trick) keeps a stage-k batch at k·c+1 passes however long the questions are. Positions are
counted over real tokens only, so the padding changes no row's logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from coconutblt.hf.coconut_lm import IGNORE_INDEX, positions_from_mask


@dataclass
class Encoded:
    """One training row: token ids and labels (-100 where no loss), same length."""

    input_ids: list[int]
    labels: list[int]


def encode_prompt(tokenizer, prompt_text: str) -> list[int]:
    """Prompt ids with the tokenizer's own prefix (Llama's BOS; nothing for GPT-2)."""
    return tokenizer.encode(prompt_text, add_special_tokens=True)


def encode_example(tokenizer, prompt_text: str, target_text: str) -> Encoded:
    """prompt (question, markers, thoughts: no loss) + target (steps, answer) + EOS (loss).

    The two parts are tokenized separately, as the official code does, so the label boundary
    is exact and an evaluation prompt tokenizes exactly as in training.
    """
    prompt = encode_prompt(tokenizer, prompt_text)
    target = tokenizer.encode(target_text, add_special_tokens=False) + [tokenizer.eos_token_id]
    return Encoded(prompt + target, [IGNORE_INDEX] * len(prompt) + target)


def collate(rows: list[Encoded], pad_id: int, latent_id: int) -> dict[str, torch.Tensor]:
    """Rows -> input_ids, attention_mask, labels, position_ids, each (B, T).

    Rows with thoughts are left-padded so their first thought shares one column; then every
    row is right-padded to the longest.
    """
    firsts = [r.input_ids.index(latent_id) if latent_id in r.input_ids else None for r in rows]
    align = max((f for f in firsts if f is not None), default=0)
    lefts = [align - f if f is not None else 0 for f in firsts]
    T = max(left + len(r.input_ids) for left, r in zip(lefts, rows, strict=True))
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), T), dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for b, (left, r) in enumerate(zip(lefts, rows, strict=True)):
        n = len(r.input_ids)
        ids[b, left : left + n] = torch.tensor(r.input_ids)
        mask[b, left : left + n] = 1
        labels[b, left : left + n] = torch.tensor(r.labels)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "position_ids": positions_from_mask(mask),
    }


def pad_prompts(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad prompt ids for generation -> input_ids, attention_mask (B, T)."""
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for b, p in enumerate(prompts):
        if p:
            ids[b, T - len(p) :] = torch.tensor(p)
            mask[b, T - len(p) :] = 1
    return ids, mask
