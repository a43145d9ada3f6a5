"""AdamW for stacked adapters: dim 0 of every parameter indexes an independent adapter.

Each adapter keeps its own step count, learning rate (its own schedule length) and gradient-norm
clip, so K adapters stepped together follow exactly the trajectories they would follow alone under
`torch.optim.AdamW` + `clip_grad_norm_`. Adapters whose data is exhausted are masked out: no
parameter change and no state change.
"""

from __future__ import annotations

import math

import torch

from seal_runner.choices import LrSchedule


class StackedAdamW:
    def __init__(
        self,
        params: list[torch.nn.Parameter],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = params
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        num_adapters = params[0].shape[0]
        device = params[0].device
        self.steps = torch.zeros(num_adapters, dtype=torch.float64, device=device)
        self.exp_avg = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p, dtype=torch.float32) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Per-adapter `clip_grad_norm_`; returns each adapter's pre-clip norm."""
        squares = sum(p.grad.float().pow(2).flatten(1).sum(1) for p in self.params if p.grad is not None)
        norms = torch.as_tensor(squares, dtype=torch.float32).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(coef.to(p.grad.dtype).view(-1, *[1] * (p.dim() - 1)))
        return norms

    @torch.no_grad()
    def step(self, lrs: torch.Tensor, active: torch.Tensor) -> None:
        """One AdamW step for the adapters where `active` is true, each at its own `lrs[k]`.

        Works in place on the active adapters' slices only (the whole tensor when all are active, the
        common case), so a step costs a few passes over the adapter weights and no full-size masks."""
        active = active.to(self.steps.device)
        slots = active.nonzero().flatten()
        if slots.numel() == 0:
            return
        everyone = slots.numel() == active.numel()
        self.steps[slots] += 1
        steps = self.steps[slots]
        bias1 = (1 - self.beta1**steps).float()
        bias2_sqrt = (1 - self.beta2**steps).sqrt().float()
        lrs = lrs.to(self.steps.device).float()[slots]
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            shape = (-1, *[1] * (p.dim() - 1))
            if everyone:
                param, grad, m, v = p.data, p.grad, exp_avg, exp_avg_sq
            else:
                param, grad, m, v = p.data[slots], p.grad[slots], exp_avg[slots], exp_avg_sq[slots]
            grad = grad.float()
            m.lerp_(grad, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denom = (v.sqrt() / bias2_sqrt.view(shape)).add_(self.eps)
            work = param.float() if param.dtype != torch.float32 else param
            if self.weight_decay:
                work.mul_((1 - lrs * self.weight_decay).view(shape))
            work.sub_(m / denom * (lrs / bias1).view(shape))
            if work is not param:
                param.copy_(work)
            if not everyone:
                p.data[slots], exp_avg[slots], exp_avg_sq[slots] = param, m, v


def linear_schedule(step: int, total_steps: int, warmup_steps: int) -> float:
    """transformers' get_linear_schedule_with_warmup multiplier at optimizer step `step`."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def cosine_schedule(step: int, total_steps: int, warmup_steps: int) -> float:
    """transformers' get_cosine_schedule_with_warmup multiplier (half a cosine, no restarts)."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


LR_SCHEDULES = {LrSchedule.linear: linear_schedule, LrSchedule.cosine: cosine_schedule}


def lr_schedule(name: LrSchedule | str):
    """The multiplier function named by `lora.lr_schedule`. A config's name was checked at
    composition; a LoraConfig built in Python holds whatever string it was given, checked here."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"lora.lr_schedule must be one of {LrSchedule.values()}, got {name!r}")
    return LR_SCHEDULES[name]
