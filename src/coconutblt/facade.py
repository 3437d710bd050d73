"""`Coconut`: the small-library interface (prompt -> continuous thoughts -> answer) on the
hybrid byte model.

    model = Coconut(num_reasoning_steps=3, num_latents_per_step=1,
                    transformer=dict(num_tokens=256, dim=512, depth=6))
    loss = model(prompt, answer)           # prompt (B, Tp), answer (B, Ta) ids < num_tokens
    answer = model.generate(prompt, max_length=64)   # (B, 64)

Under the hood each example is `BOS prompt <|start-latent|> <|latent|>*n <|end-latent|>
answer`, with n = num_reasoning_steps * num_latents_per_step fed-back thoughts, and the loss
is taken on the answer only: the same forward (n+1 cached latent passes) that the trainer uses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from coconutblt.model import HybridTransformer, ModelConfig
from coconutblt.vocab import (
    BOS_ID,
    END_LATENT_ID,
    LATENT_ID,
    NUM_BYTES,
    START_LATENT_ID,
    VOCAB_SIZE,
)


class Coconut(nn.Module):
    def __init__(
        self,
        num_reasoning_steps: int = 3,
        num_latents_per_step: int = 1,
        transformer: dict[str, Any] | None = None,
        **model_overrides: Any,
    ) -> None:
        super().__init__()
        t = dict(transformer or {})
        self.num_tokens = int(t.pop("num_tokens", NUM_BYTES))
        if not 1 <= self.num_tokens <= NUM_BYTES:
            raise ValueError(
                f"num_tokens={self.num_tokens}: this byte model takes ids 0..255 (num_tokens <= 256)"
            )
        dim, depth = int(t.pop("dim", 512)), int(t.pop("depth", 6))
        heads = int(t.pop("heads", max(dim // 64, 1)))
        if t:
            raise ValueError(
                f"unknown transformer options {sorted(t)}; valid: num_tokens, dim, depth, heads"
            )
        self.n_thoughts = num_reasoning_steps * num_latents_per_step
        d_local = min(dim, 256)
        cfg = dict(
            d_model=dim,
            n_layers=depth,
            n_heads=heads,
            d_local=d_local,
            local_heads=max(d_local // 64, 1),
            max_seq_len=4096,
            patcher="fixed",
            patch_size=4,
        )
        cfg.update(model_overrides)
        self.model = HybridTransformer(ModelConfig(**cfg))

    def _sequence(self, prompt: torch.Tensor) -> torch.Tensor:
        """prompt (B, Tp) -> (B, 1 + Tp + n + 2): BOS, prompt, thought block."""
        B = prompt.shape[0]
        thoughts = [START_LATENT_ID] + [LATENT_ID] * self.n_thoughts + [END_LATENT_ID]
        head = prompt.new_full((B, 1), BOS_ID)
        block = torch.tensor(thoughts, device=prompt.device).expand(B, -1)
        return torch.cat([head, prompt, block], dim=1)

    def _check(self, ids: torch.Tensor, name: str) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name} must be a (batch, length) integer tensor")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_tokens):
            raise ValueError(f"{name} ids must be in [0, {self.num_tokens})")

    def forward(self, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the answer given the prompt and the continuous thoughts."""
        self._check(prompt, "prompt")
        self._check(answer, "answer")
        ctx = self._sequence(prompt.long())
        ids = torch.cat([ctx, answer.long()], dim=1)
        labels = torch.cat([torch.full_like(ctx, -100), answer.long()], dim=1)
        out = self.model(ids, labels=labels)
        return out.loss

    @torch.no_grad()
    def generate(
        self, prompt: torch.Tensor, max_length: int = 64, temperature: float = 0.0
    ) -> torch.Tensor:
        """(B, Tp) prompt -> (B, max_length) answer ids, after the thoughts (greedy by default)."""
        self._check(prompt, "prompt")
        from coconutblt.inference.generate import generate

        prompts = self._sequence(prompt.long()).tolist()
        if len(prompts[0]) + max_length - 1 > self.model.config.max_seq_len:
            raise ValueError(
                f"prompt ({prompt.shape[1]} ids + {self.n_thoughts + 3} markers) plus max_length={max_length} "
                f"exceeds the model's context max_seq_len={self.model.config.max_seq_len}"
            )
        out = generate(
            self.model,
            prompts,
            max_new_tokens=max_length,
            temperature=temperature,
            eos_id=None,
            suppress_ids=range(self.num_tokens, VOCAB_SIZE),
        )
        return torch.tensor(out.tokens, device=prompt.device)
