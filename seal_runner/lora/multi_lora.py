"""K LoRA adapters over one frozen base model, routed per batch row.

SEAL scores every candidate self-edit with its own LoRA update. Training (or serving) them one at a
time repeats the same frozen-base matmuls K times. `MultiLoraLinear` keeps the K adapters' A and B
matrices stacked and applies adapter `rows[i]` to batch row i with batched matmuls, so a single
forward/backward over the shared base trains K independent adapters: their parameters are disjoint
slices, so the gradient each one receives is exactly the gradient of its own rows' loss.

Row index -1 means "no adapter" (the base model), so base and adapted prompts share one batch.
Without gradients (generation, scoring) each adapter is applied to its own rows instead, which skips
the per-row copies of its matrices.
Adapters of different ranks are stored zero-padded to the largest rank: padded A rows and B columns
receive zero gradient and stay zero, so the padding is exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

PEFT_PREFIX = "base_model.model."


class AdapterRouter:
    """Shared by every MultiLoraLinear of a model: which adapter serves each batch row, and the rows
    of each adapter (`groups`, found once per route rather than once per layer and step)."""

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None
        self._groups: list[tuple[int, torch.Tensor]] | None = None

    @contextmanager
    def route(self, rows: torch.Tensor | list[int]) -> Iterator[None]:
        previous = self.rows, self._groups
        self.rows, self._groups = torch.as_tensor(rows, dtype=torch.long), None
        try:
            yield
        finally:
            self.rows, self._groups = previous

    def groups(self, device: torch.device) -> list[tuple[int, torch.Tensor]]:
        """(slot, its rows' indices) for every adapter routed to; base rows (-1) are in none."""
        if self._groups is None:
            slots = [int(s) for s in self.rows.unique() if s >= 0]
            self._groups = [(s, torch.nonzero(self.rows == s).flatten().to(device)) for s in slots]
        return self._groups


class MultiLoraLinear(nn.Module):
    """`base(x) + scale[k] * x A[k]^T B[k]^T` with k = router.rows[row]; base weights frozen."""

    def __init__(
        self, base: nn.Linear, num_adapters: int, max_rank: int, router: AdapterRouter, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.base = base
        self.router = router
        self.dropout = dropout  # applied to the LoRA branch's input only, as PEFT does
        # fp32 adapter weights even over a bf16 base: small LoRA updates vanish in bf16 rounding.
        factory = {"device": base.weight.device, "dtype": torch.float32}
        self.lora_A = nn.Parameter(torch.zeros(num_adapters, max_rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(num_adapters, base.out_features, max_rank, **factory))
        self.register_buffer("scaling", torch.zeros(num_adapters, **factory))
        self.register_buffer("ranks", torch.zeros(num_adapters, dtype=torch.long, device=base.weight.device))

    @property
    def num_adapters(self) -> int:
        return self.lora_A.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        rows = self.router.rows
        if rows is None:
            return out
        if rows.shape[0] != x.shape[0]:
            raise ValueError(f"router has {rows.shape[0]} rows but the batch has {x.shape[0]}")
        if torch.is_grad_enabled():
            return self._add_per_row(out, x)
        return self._add_by_adapter(out, x)

    def _add_per_row(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Training: each row's adapter gathered, then batched matmuls; autograd sends each
        adapter the gradient of its own rows only."""
        rows = self.router.rows.to(x.device)
        active = rows >= 0
        slot = rows.clamp(min=0)
        a = self.lora_A[slot].to(x.dtype)  # [N, r, in]
        b = self.lora_B[slot].to(x.dtype)  # [N, out, r]
        scale = (self.scaling[slot] * active).to(x.dtype)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.training and self.dropout > 0:
            flat = nn.functional.dropout(flat, self.dropout)
        delta = torch.bmm(torch.bmm(flat, a.transpose(1, 2)), b.transpose(1, 2))
        return out + (delta * scale.view(-1, 1, 1)).view(out.shape)

    def _add_by_adapter(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Inference (generation, scoring): each adapter's delta on its own rows, added in place.
        The gather above copies two matrices per row, which a decode step (one token per row) pays
        in full in every layer; a QA pass of 80 prompts (half under 8 adapters) on SmolLM2 ran
        1.44x faster this way, with the same answers (scripts/bench_qa.py; RESULTS.md, "Sampling
        and QA engines")."""
        flat_x = x.reshape(x.shape[0], -1, x.shape[-1])
        flat_out = out.view(out.shape[0], -1, out.shape[-1])
        for slot, idx in self.router.groups(x.device):
            a, b = self.lora_A[slot].to(x.dtype), self.lora_B[slot].to(x.dtype)
            delta = (flat_x.index_select(0, idx) @ a.T) @ b.T
            flat_out.index_add_(0, idx, delta.to(flat_out.dtype), alpha=float(self.scaling[slot]))
        return out

    @torch.no_grad()
    def reset_adapter(self, slot: int, rank: int, alpha: float, generator: torch.Generator) -> None:
        """PEFT's init: A ~ kaiming_uniform(a=√5) = U(±1/√in) on the first `rank` rows, B = 0."""
        if rank > self.lora_A.shape[1]:
            raise ValueError(f"rank {rank} exceeds this layer's max rank {self.lora_A.shape[1]}")
        init = lora_A_init(rank, self.base.in_features, generator)
        self.lora_A[slot].zero_()
        self.lora_A[slot, :rank] = init.to(self.lora_A.device, self.lora_A.dtype)
        self.lora_B[slot].zero_()
        self.scaling[slot] = alpha / rank
        self.ranks[slot] = rank


def lora_A_init(rank: int, in_features: int, generator: torch.Generator) -> torch.Tensor:
    """PEFT's A init, kaiming_uniform(a=√5) = U(±1/√in), drawn from `generator` on the CPU.

    Both inner-loop paths draw from it layer by layer in module order, so one seed gives the fast
    and the reference path the same starting adapter.
    """
    bound = 1.0 / math.sqrt(in_features)
    return torch.rand(rank, in_features, generator=generator, device="cpu") * 2 * bound - bound


@dataclass(frozen=True)
class AdapterSpec:
    """What one slot holds: rank and alpha (scaling = alpha / rank, as PEFT without rsLoRA)."""

    rank: int
    alpha: float


class MultiLoraModel:
    """Injects MultiLoraLinear into the target projections of a causal LM, once, and manages slots."""

    def __init__(
        self,
        model: nn.Module,
        target_modules: list[str],
        num_adapters: int,
        max_rank: int,
        dropout: float = 0.0,
    ) -> None:
        self.model = model
        self.target_modules = list(target_modules)
        self.max_rank, self.dropout = max_rank, dropout
        self.router = AdapterRouter()
        self.layers: dict[str, MultiLoraLinear] = {}
        for p in model.parameters():
            p.requires_grad_(False)
        for name, module in list(model.named_modules()):
            if name.rsplit(".", 1)[-1] in self.target_modules and isinstance(module, nn.Linear):
                parent_name, _, child = name.rpartition(".")
                wrapped = MultiLoraLinear(module, num_adapters, max_rank, self.router, dropout)
                setattr(model.get_submodule(parent_name), child, wrapped)
                self.layers[name] = wrapped
        if not self.layers:
            raise ValueError(
                f"lora.target_modules={self.target_modules} matched no nn.Linear in {type(model).__name__}"
            )
        self.specs: list[AdapterSpec | None] = [None] * num_adapters

    @property
    def num_adapters(self) -> int:
        return len(self.specs)

    def parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.lora_A, layer.lora_B)]

    def reset(self, slot: int, spec: AdapterSpec, seed: int) -> None:
        """Fresh adapter in `slot`: deterministic in `seed`, never re-wrapping the model."""
        generator = torch.Generator().manual_seed(seed)
        for layer in self.layers.values():
            layer.reset_adapter(slot, spec.rank, spec.alpha, generator)
        self.specs[slot] = spec

    @torch.no_grad()
    def clear(self, slot: int) -> None:
        for layer in self.layers.values():
            layer.lora_A[slot].zero_()
            layer.lora_B[slot].zero_()
            layer.scaling[slot] = 0.0
        self.specs[slot] = None

    def adapter_state(self, slot: int) -> dict[str, torch.Tensor]:
        """Slot weights in PEFT's key layout, trimmed to the adapter's rank."""
        spec = self._spec(slot)
        state = {}
        for name, layer in self.layers.items():
            state[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A[slot, : spec.rank].detach().clone()
            state[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B[slot, :, : spec.rank].detach().clone()
        return state

    @torch.no_grad()
    def load_adapter_state(self, slot: int, state: dict[str, torch.Tensor], spec: AdapterSpec) -> None:
        if spec.rank > self.max_rank:
            raise ValueError(
                f"adapter rank {spec.rank} exceeds this model's slot rank {self.max_rank} (engine.max_lora_rank)"
            )
        self.clear(slot)
        for name, layer in self.layers.items():
            a, b = state[f"{PEFT_PREFIX}{name}.lora_A.weight"], state[f"{PEFT_PREFIX}{name}.lora_B.weight"]
            layer.lora_A[slot, : spec.rank] = a.to(layer.lora_A.device, layer.lora_A.dtype)
            layer.lora_B[slot, :, : spec.rank] = b.to(layer.lora_B.device, layer.lora_B.dtype)
            layer.scaling[slot] = spec.alpha / spec.rank
            layer.ranks[slot] = spec.rank
        self.specs[slot] = spec

    def save_peft(self, slot: int, directory: str | Path, base_model_name_or_path: str) -> Path:
        """Write a PEFT-format adapter (adapter_config.json + adapter_model.safetensors) that PEFT,
        vLLM's LoRARequest and `load_peft` all read."""
        from safetensors.torch import save_file

        spec = self._spec(slot)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.float().contiguous().cpu() for k, v in self.adapter_state(slot).items()}
        save_file(state, str(directory / "adapter_model.safetensors"))
        config = {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model_name_or_path,
            "r": spec.rank,
            "lora_alpha": spec.alpha,
            "lora_dropout": self.dropout,
            "target_modules": sorted({name.rsplit(".", 1)[-1] for name in self.layers}),
            "bias": "none",
            "fan_in_fan_out": False,
            "use_rslora": False,
            "use_dora": False,
            "inference_mode": True,
            "modules_to_save": None,
        }
        (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
        return directory

    def load_peft(self, slot: int, directory: str | Path) -> AdapterSpec:
        from safetensors.torch import load_file

        directory = Path(directory)
        config = json.loads((directory / "adapter_config.json").read_text())
        spec = AdapterSpec(rank=int(config["r"]), alpha=float(config["lora_alpha"]))
        self.load_adapter_state(slot, load_file(str(directory / "adapter_model.safetensors")), spec)
        return spec

    def _spec(self, slot: int) -> AdapterSpec:
        spec = self.specs[slot]
        if spec is None:
            raise ValueError(f"adapter slot {slot} is empty")
        return spec
