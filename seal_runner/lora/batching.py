"""Tokenised training sequences, per-epoch batch schedules and padded batches.

The fast path pads each batch only to its own longest row (right padding) and masks pads out of
the loss; the reference path pads every row to `max_length` and labels the pads, as the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TrainRow:
    """One training sequence: token ids and per-token labels (`IGNORE_INDEX` where no loss is taken).

    Plain text sequences label every token; prompt/completion rows (ARC test-time training on the
    output tokens only) label just the completion, so the label mask travels with the tokens."""

    input_ids: list[int]
    labels: list[int]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"{len(self.input_ids)} input ids but {len(self.labels)} labels")

    @classmethod
    def all_tokens(cls, ids: list[int]) -> TrainRow:
        return cls(list(ids), list(ids))

    def truncated(self, max_length: int) -> TrainRow:
        if len(self.input_ids) <= max_length:
            return self
        return TrainRow(self.input_ids[:max_length], self.labels[:max_length])

    @property
    def num_targets(self) -> int:
        """Positions that contribute a next-token loss (the first token is never predicted)."""
        return sum(label != IGNORE_INDEX for label in self.labels[1:])


def tokenize_sequences(
    tokenizer, texts: list[str], max_length: int | None, append_eos: bool
) -> list[list[int]]:
    """Token ids per text, EOS appended (the model learns where a fact ends), cut at max_length
    (None: uncut, for `cpt.max_length=null`, which inherits the SFT option)."""
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if (
            append_eos
            and tokenizer.eos_token_id is not None
            and (not ids or ids[-1] != tokenizer.eos_token_id)
        ):
            ids = ids + [tokenizer.eos_token_id]
        out.append(ids[:max_length])
    return out


def epoch_schedule(num_sequences: int, epochs: int, batch_size: int, seed: int) -> list[list[int]]:
    """Batches of sequence indices, reshuffled every epoch from (seed, epoch): the same order
    whether this adapter trains alone or beside others."""
    batches = []
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(num_sequences, generator=generator).tolist()
        batches += [order[i : i + batch_size] for i in range(0, num_sequences, batch_size)]
    return batches


def pad_batch(rows: list[list[int]], pad_id: int, pad_to: int | None = None, label_pads: bool = False):
    """Right-pad to the longest row (or `pad_to`); returns input_ids, attention_mask, labels."""
    length = pad_to or max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[i, : len(row)] = 1
    labels = input_ids.clone() if label_pads else input_ids.masked_fill(attention == 0, IGNORE_INDEX)
    return input_ids, attention, labels


def pad_rows(rows: list[TrainRow], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad `TrainRow`s to the longest; pads never carry a label."""
    input_ids, attention, _ = pad_batch([r.input_ids for r in rows], pad_id)
    labels, _, _ = pad_batch([r.labels for r in rows], IGNORE_INDEX)
    return input_ids, attention, labels


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position next-token cross-entropy [N, L-1] and its validity mask."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    valid = shift_labels != IGNORE_INDEX
    losses = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.clamp(min=0).reshape(-1),
        reduction="none",
    ).view(shift_labels.shape)
    return losses * valid, valid
