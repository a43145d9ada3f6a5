"""AdamW for stacked adapters: dim 0 of every parameter indexes an independent adapter.

Each adapter keeps its own step count, learning rate (its own schedule length) and gradient-norm
clip, so K adapters stepped together follow exactly the trajectories they would follow alone under
`torch.optim.AdamW` + `clip_grad_norm_`. Adapters whose data is exhausted are masked out: no
parameter change and no state change.
"""

from __future__ import annotations

import torch


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
        """One AdamW step for the adapters where `active` is true, each at its own `lrs[k]`."""
        active = active.to(self.steps.device)
        self.steps += active.to(self.steps.dtype)
        steps = self.steps.clamp(min=1)
        bias1 = (1 - self.beta1**steps).float()
        bias2_sqrt = (1 - self.beta2**steps).sqrt().float()
        lrs = lrs.to(self.steps.device).float() * active
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            shape = (-1, *[1] * (p.dim() - 1))
            mask = active.view(shape)
            grad = p.grad.float()
            exp_avg.copy_(torch.where(mask, exp_avg.lerp(grad, 1 - self.beta1), exp_avg))
            exp_avg_sq.copy_(
                torch.where(mask, exp_avg_sq * self.beta2 + (1 - self.beta2) * grad * grad, exp_avg_sq)
            )
            lr = lrs.view(shape)
            denom = exp_avg_sq.sqrt() / bias2_sqrt.view(shape) + self.eps
            update = p.float() * (1 - lr * self.weight_decay) - (lr / bias1.view(shape)) * exp_avg / denom
            p.copy_(torch.where(mask, update, p.float()).to(p.dtype))


def linear_schedule(step: int, total_steps: int, warmup_steps: int) -> float:
    """transformers' get_linear_schedule_with_warmup multiplier at optimizer step `step`."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
