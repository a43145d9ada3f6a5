"""Teacher-forced likelihood of gold answers: a dense score of what a model knows.

Greedy answers graded right or wrong move in steps of one question; the mean log-probability per
gold-answer token moves with every bit a model learnt, so it ranks candidates and compares policies
where accuracy sits at the floor (knowledge's `likelihood` reward and its held-out `answer_logprob`,
and the no-update `proxy`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext

import torch


class AnswerLikelihood:
    """Mean log-probability per answer token of (prompt, answer) pairs under one causal LM.

    The prompt is tokenised as the generation engines tokenise it (special tokens by the tokenizer's
    rule), the answer separately without them, so the scored tokens are exactly those a greedy
    answer would have to produce; batches are right-padded and the pads masked.

    With a multi-adapter `router` (seal_runner/lora/multi_lora.py), `rows` gives each pair's adapter
    slot (-1: the base model), so many adapted models are scored in one batched pass."""

    def __init__(self, model, tokenizer, batch_size: int = 16, max_length: int = 1024, router=None) -> None:
        self.model, self.tokenizer, self.router = model, tokenizer, router
        self.batch_size, self.max_length = batch_size, max_length
        self.device = next(model.parameters()).device
        self.tokens_forwarded = 0  # padded tokens through the model: the cost, independent of CPU load

    @torch.no_grad()
    def __call__(self, pairs: Sequence[tuple[str, str]], rows: Sequence[int] | None = None) -> list[float]:
        if (rows is None) != (self.router is None):
            raise ValueError("adapter rows need a router, and a router needs rows")
        encoded = [self._encode(prompt, answer) for prompt, answer in pairs]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        scores = [math.nan] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            picked = order[start : start + self.batch_size]
            batch = [encoded[i] for i in picked]
            width = max(len(ids) for ids, _ in batch)
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch], device=self.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch], device=self.device)
            self.tokens_forwarded += ids.numel()
            route = self.router.route([rows[i] for i in picked]) if rows is not None else nullcontext()
            with route:
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            logprobs = torch.log_softmax(logits.float(), -1)
            for row, (x, answer_start) in enumerate(batch):
                targets = torch.tensor(x[answer_start:], device=self.device)
                predicted = logprobs[row, answer_start - 1 : len(x) - 1]
                value = predicted.gather(-1, targets[:, None]).mean().item()
                scores[order[start + row]] = value
        return scores

    def _encode(self, prompt: str, answer: str) -> tuple[list[int], int]:
        prompt_ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not answer_ids:
            raise ValueError(f"empty gold answer for prompt ending {prompt[-80:]!r}")
        keep = self.max_length - len(answer_ids)
        if keep < 1:
            raise ValueError(f"gold answer {answer!r} alone exceeds max_length={self.max_length}")
        prompt_ids = prompt_ids[-keep:]  # keep the question; an over-long self-edit loses its head
        return prompt_ids + answer_ids, len(prompt_ids)
