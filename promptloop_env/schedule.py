"""Refinement schedules: at which denoising steps the agent acts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def validate_schedule(schedule: str | Sequence[int], num_steps: int, num_refinements: int) -> str | tuple[int, ...]:
    """Check a ``refine_schedule`` argument and return it in canonical form.

    Explicit schedules are strictly increasing denoising-step indices, one per action, the first 0
    (the first prompt conditions the model from the start) and all below ``num_steps``.

    >>> validate_schedule([0, 5, 12], 20, 3)
    (0, 5, 12)
    >>> validate_schedule("0,5,12", 20, 3)  # the command line's form
    (0, 5, 12)
    >>> validate_schedule("0", 20, 1)
    (0,)
    """
    if isinstance(schedule, str) and schedule.replace(",", "").replace(" ", "").isdigit():
        try:
            schedule = [int(part) for part in schedule.split(",")]
        except ValueError as err:
            raise ValueError(
                f"refine_schedule as text must be comma-separated step indices like '0,9,11,13,15'; got {schedule!r}."
            ) from err
    if isinstance(schedule, str):
        if schedule not in ("uniform", "random"):
            raise ValueError(
                f"refine_schedule must be 'uniform', 'random' or a list of step indices; got {schedule!r}."
            )
        return schedule
    try:
        steps = tuple(int(s) for s in schedule)
    except (TypeError, ValueError) as err:
        raise TypeError(f"refine_schedule must be 'uniform', 'random' or a list of ints; got {schedule!r}.") from err
    if any(isinstance(s, (bool, float)) for s in schedule):
        raise TypeError(f"refine_schedule step indices must be ints; got {list(schedule)!r}.")
    if len(steps) != num_refinements:
        raise ValueError(
            f"refine_schedule has {len(steps)} step indices but num_refinements={num_refinements}: give one index "
            "per action (or set num_refinements to match)."
        )
    if steps[0] != 0:
        raise ValueError(
            "refine_schedule must start at step 0 (the first action's prompt is used from the start); "
            f"got {list(steps)}."
        )
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"refine_schedule must be strictly increasing; got {list(steps)}.")
    if steps[-1] >= num_steps:
        raise ValueError(f"refine_schedule indices must be < num_inference_steps={num_steps}; got {list(steps)}.")
    return steps


def refinement_steps(
    schedule: str | tuple[int, ...], num_steps: int, num_refinements: int, rng: np.random.Generator
) -> tuple[int, ...]:
    """The denoising-step index at which each action starts to apply, for one episode.

    ``"uniform"`` spaces the actions evenly; ``"random"`` draws the later ones without replacement from
    steps 1..num_steps-1 with the env's own ``rng`` (redrawn every episode).

    >>> refinement_steps("uniform", 20, 5, np.random.default_rng(0))
    (0, 4, 8, 12, 16)
    """
    if schedule == "uniform":
        return tuple(i * num_steps // num_refinements for i in range(num_refinements))
    if schedule == "random":
        later = rng.choice(np.arange(1, num_steps), size=num_refinements - 1, replace=False)
        return (0, *sorted(int(s) for s in later))
    return tuple(schedule)
