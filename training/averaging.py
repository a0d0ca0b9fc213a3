"""Exponential moving average (EMA) of a training run's weights.

The averaged weights are what a run with ``ema_decay > 0`` exports. With few identities the useful
schedule is short (reports/losses.md: 1,000 steps under-fit, 3,000 over-fit), so the last weights
carry the noise of the last few batches; an average over the tail of the schedule is a cheap way to
smooth it (Polyak averaging; the EMA "model averaging" of many modern training recipes). Measured on
the shipped recipe it did not pay (reports/losses.md, "Stop 13"): the cosine schedule already anneals
the rate to zero, so the average only mixes in less-trained weights. Off in every config.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """EMA of the floating-point state (parameters *and* batch-norm statistics) of named modules.

    Update ``t`` (1-based) moves the average towards the live weights by ``max(1 - decay, 1 / t)``:
    an exact running mean for the first ``1 / (1 - decay)`` updates, then an EMA with that horizon,
    so the random initial weights never linger in the average. Integer buffers (batch-norm's
    ``num_batches_tracked``) are copied.
    """

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay={decay} must lie in (0, 1), e.g. 0.998; use 0 in the config to turn EMA off")
        self.decay = decay
        self.updates = 0
        self.state = {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in modules.items()}

    @torch.no_grad()
    def update(self, modules: dict[str, nn.Module]) -> None:
        """Fold the modules' current weights into the average (call after each optimiser step)."""
        self.updates += 1
        weight = max(1.0 - self.decay, 1.0 / self.updates)
        for name, module in modules.items():
            avg = self.state[name]
            floats_avg, floats_live = [], []
            for k, live in module.state_dict().items():
                if live.is_floating_point():
                    floats_avg.append(avg[k])
                    floats_live.append(live.detach())
                else:
                    avg[k].copy_(live)
            torch._foreach_lerp_(floats_avg, floats_live, weight)

    def restore(self, state: dict[str, dict[str, torch.Tensor]], updates: int) -> None:
        """Continue from a checkpoint's averaged state after ``updates`` updates."""
        self.state, self.updates = state, updates
