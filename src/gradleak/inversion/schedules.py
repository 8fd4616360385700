"""Learning-rate schedules shared by optimisation attacks.

Example:
    >>> step_decay_milestones(800)
    [300, 500, 700]
"""

from __future__ import annotations

import torch


def step_decay_milestones(steps: int) -> list[int]:
    """Inverting Gradients' decay points: 3/8, 5/8 and 7/8 of the run."""
    return [int(steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]


def step_decay(
    optimizer: torch.optim.Optimizer, steps: int, gamma: float = 0.1
) -> torch.optim.lr_scheduler.MultiStepLR:
    """A ``MultiStepLR`` that multiplies the lr by ``gamma`` at 3/8, 5/8 and 7/8 of ``steps``."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, step_decay_milestones(steps), gamma)
