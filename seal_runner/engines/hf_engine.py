"""transformers generation with the multi-adapter LoRA layer: the same interface as vLLM.

Adapters are loaded from their PEFT directories into the slots of one resident model and routed
per row, so base and several adapted models share one batched `generate` call. Sampling draws each
row from its own seeded generator (`RowSeededSampler`), as the Engine protocol's per-prompt seeds ask.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from seal_runner.engines.base import Completion, LoraAdapter, Sampling
from seal_runner.likelihood import AnswerLikelihood
from seal_runner.lora.multi_lora import MultiLoraModel
from seal_runner.models import load_causal_lm, load_tokenizer


class RowSeededSampler(LogitsProcessor):
    """Temperature and top-p, then Gumbel noise from one `torch.Generator` per row, for greedy
    `generate` to take the argmax of: argmax(logits / T + Gumbel noise) is an exact draw from
    softmax(logits / T) (the Gumbel-max trick).

    Hand-written because HF's sampling (`do_sample=True`) draws every row from the global RNG in one
    `torch.multinomial` call, so a row's tokens would depend on which prompts share its batch and on
    its position. Here row i's noise comes only from its own seed, one draw of vocabulary size per
    step; with left padding, step t is every row's t-th new token, so a prompt's completion depends
    only on (prompt, seed, adapter, sampling) up to float noise in the padded forward pass.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: torch.device) -> None:
        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            # keep the most likely tokens until their mass reaches top_p (always the first): HF's rule
            ranked, order = scores.sort(dim=-1, descending=True)
            probs = ranked.softmax(dim=-1)
            mass_before = probs.cumsum(dim=-1) - probs
            scores = scores.scatter(-1, order, ranked.masked_fill(mass_before >= self.top_p, -torch.inf))
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators]
        )
        return scores - torch.log(-torch.log(uniform))


class HFEngine:
    def __init__(
        self,
        model_path: str,
        max_model_len: int = 2048,
        dtype: str = "auto",
        seed: int = 0,
        max_loras: int = 8,
        max_lora_rank: int = 32,
        batch_size: int = 32,
        device: str = "auto",
    ) -> None:
        self.tokenizer = load_tokenizer(model_path)
        self.tokenizer.padding_side = "left"
        self.model = load_causal_lm(model_path, dtype=dtype, device=device)
        self.device = next(self.model.parameters()).device
        self.max_model_len, self.batch_size, self.seed = max_model_len, batch_size, seed
        self.max_loras, self.max_lora_rank = max_loras, max_lora_rank
        self.lora: MultiLoraModel | None = None  # injected on first adapter use, into all linears

    def _ensure_lora(self, adapters: Sequence[LoraAdapter]) -> None:
        if self.lora is not None:
            return
        import json
        from pathlib import Path

        targets = set()
        for adapter in adapters:
            targets |= set(
                json.loads((Path(adapter.path) / "adapter_config.json").read_text())["target_modules"]
            )
        self.lora = MultiLoraModel(self.model, sorted(targets), self.max_loras, self.max_lora_rank)

    def generate(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        adapters: Sequence[LoraAdapter | None] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        adapters = list(adapters) if adapters is not None else [None] * len(prompts)
        distinct = list(dict.fromkeys(a for a in adapters if a is not None))
        if distinct:
            self._ensure_lora(distinct)
        # without per-prompt seeds, row i of this call is seeded from the engine's seed
        seeds = list(seeds) if seeds is not None else [self.seed + i for i in range(len(prompts))]
        results: list[Completion | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts), desc="generate (hf)", unit="prompt")
        for todo, slot_of in self._adapter_chunks(adapters, distinct):
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                rows = [slot_of[adapters[i]] if adapters[i] is not None else -1 for i in batch]
                completions = self._generate_batch(
                    [prompts[i] for i in batch], [seeds[i] for i in batch], rows, sampling
                )
                for i, completion in zip(batch, completions, strict=True):
                    results[i] = completion
                bar.update(len(batch))
        bar.close()
        return results  # type: ignore[return-value]

    def _adapter_chunks(self, adapters: Sequence[LoraAdapter | None], distinct: list[LoraAdapter]):
        """Fill the slots chunk by chunk, each chunk at most `max_loras` distinct adapters; yield the
        indices the loaded chunk serves (base rows with the first) and each adapter's slot."""
        for chunk_start in range(0, max(1, len(distinct)), self.max_loras):
            chunk = distinct[chunk_start : chunk_start + self.max_loras]
            slot_of = {a: i for i, a in enumerate(chunk)}
            for adapter, slot in slot_of.items():
                self.lora.load_peft(slot, adapter.path)
            yield (
                [i for i, a in enumerate(adapters) if (a in slot_of) or (a is None and chunk_start == 0)],
                slot_of,
            )

    def answer_logprobs(
        self, pairs: Sequence[tuple[str, str]], adapters: Sequence[LoraAdapter | None]
    ) -> list[float]:
        """Mean log-probability per gold-answer token of each (prompt, answer) pair, teacher-forced,
        under its adapter (None: the base model); adapters fill the slots `max_loras` at a time as in
        `generate`. A dense measure of what an update taught, where greedy answers are mostly 0/1."""
        distinct = list(dict.fromkeys(a for a in adapters if a is not None))
        if distinct:
            self._ensure_lora(distinct)
        router = self.lora.router if self.lora is not None else None
        scorer = AnswerLikelihood(self.model, self.tokenizer, self.batch_size, self.max_model_len, router)
        scores: list[float | None] = [None] * len(pairs)
        for todo, slot_of in self._adapter_chunks(adapters, distinct):
            if not todo:
                continue
            rows = [slot_of[adapters[i]] if adapters[i] is not None else -1 for i in todo]
            values = scorer([pairs[i] for i in todo], rows if router is not None else None)
            for i, value in zip(todo, values, strict=True):
                scores[i] = value
        return scores  # type: ignore[return-value]

    @torch.no_grad()
    def _generate_batch(
        self, prompts: list[str], seeds: list[int], rows: list[int], sampling: Sampling
    ) -> list[Completion]:
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        # one cap for the batch, set by its longest prompt: near max_model_len a row's completion is
        # a prefix of what it would sample alone (its generator advances the same way)
        room = self.max_model_len - encoded.input_ids.shape[1]
        max_new = room if sampling.max_tokens is None else min(sampling.max_tokens, room)
        settings = {"temperature": 1.0, "top_p": 1.0, **sampling.given()}  # unset: 1 and 1, as in vLLM
        kwargs = {"do_sample": False}  # greedy; with T > 0 it takes the argmax of the noised scores
        if settings["temperature"] > 0:
            sampler = RowSeededSampler(seeds, settings["temperature"], settings["top_p"], self.device)
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
        route = self.lora.router.route(rows) if self.lora is not None else nullcontext()
        with route:
            out = self.model.generate(
                **encoded, max_new_tokens=max_new, pad_token_id=self.tokenizer.pad_token_id, **kwargs
            )
        completions = []
        eos = self.tokenizer.eos_token_id
        for row in out[:, encoded.input_ids.shape[1] :].tolist():
            ended = eos in row
            tokens = row[: row.index(eos)] if ended else row
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            completions.append(Completion(text, len(tokens) + int(ended), "stop" if ended else "length"))
        return completions

    def close(self) -> None:
        """Drop every reference to the model (the multi-adapter wrapper holds one too) and free it."""
        from seal_runner.models import release_memory

        self.model = self.lora = None
        release_memory()
