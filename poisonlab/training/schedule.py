"""The learning-rate schedule every poisonlab training loop uses: linear warm-up, then linear decay.

Callers turn their own warm-up setting (a ratio) into a step count; this module does not round."""

from __future__ import annotations

import torch


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int,
                        total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per optimiser step: the factor on every group's learning rate
    rises as (step + 1) / warmup_steps over the first `warmup_steps` steps, then falls linearly to
    0 at `total_steps`. `warmup_steps` 0 starts the decay at once, from the full rate."""

    # A plain function, not a callable object, so the scheduler's state_dict (saved in resumable
    # checkpoints) holds no schedule state.
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        return max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
