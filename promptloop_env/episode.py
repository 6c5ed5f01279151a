"""One PromptLoop episode's state, and the phases shared by :class:`PromptLoopEnv` and the vector env.

Both envs hold their configuration (backbone, reward, preview, schedule, spaces) in a
:class:`~promptloop_env.env.PromptLoopEnv` and keep one :class:`Episode` per running episode. The phases
below work on lists of episodes so that the vector env makes one batched backbone call, one batched
preview and one batched reward call per step; the single env calls them with lists of one, which runs
exactly the operations it always ran (the replay guarantee depends on that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector.utils import create_shared_memory

from promptloop_env.backbones.base import Trajectory, to_uint8
from promptloop_env.previews import resize_images
from promptloop_env.schedule import refinement_steps

if TYPE_CHECKING:
    from promptloop_env.env import PromptLoopEnv

RESET_OPTIONS = ("query", "noise_seed")
"""Keys of ``reset(options=...)`` understood by the envs."""


class PromptText(spaces.Text):
    """The ``Text`` space of prompts and queries; it refuses Gymnasium's shared memory.

    ``AsyncVectorEnv(shared_memory=True)`` reads a ``Text`` field out of shared memory once, at construction,
    and returns that stale tuple of strings at every later step (``stack-feasibility.md``, section 4).
    Creating shared memory for this space therefore raises a ``ValueError`` that says what to do instead.
    """


@create_shared_memory.register(PromptText)
def _refuse_shared_memory(space: PromptText, n: int = 1, ctx: Any = None) -> Any:
    raise ValueError(
        "PromptLoop-v0 has Text observations, which AsyncVectorEnv's shared memory would return stale (the same "
        "strings at every step). Use gym.make_vec('PromptLoop-v0', vectorization_mode='vector_entry_point') "
        "(batched denoising, fastest), vectorization_mode='sync', or vectorization_mode='async' with "
        "vector_kwargs={'shared_memory': False}."
    )


@dataclass
class Episode:
    """Everything one running episode holds besides the env's configuration.

    Attributes:
        traj: the backbone's sampling run (latents, scheduler, generator).
        query: the user's original query (what the reward scores against).
        refine_steps: the denoising step at which each action starts to apply.
        image: the latest preview, ``uint8 [S, S, 3]``.
        prompt: the prompt now in force (the query before the first action).
        history: the actions taken so far.
        prompt_truncated: whether the text encoder truncated the last action.
        segment: how many actions have been taken.
    """

    traj: Trajectory
    query: str
    refine_steps: tuple[int, ...]
    image: np.ndarray
    prompt: str
    history: list[str] = field(default_factory=list)
    prompt_truncated: bool = False
    segment: int = 0


def check_int(name: str, value: Any, minimum: int) -> None:
    """Raise ``TypeError`` unless ``value`` is an int (not a bool), ``ValueError`` if it is below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")


def check_reset_options(options: Mapping[str, Any] | None, extra: Sequence[str] = ()) -> dict[str, Any]:
    """A copy of ``options``; raises ``ValueError`` naming the valid keys when one is unknown."""
    options = dict(options or {})
    valid = (*RESET_OPTIONS, *extra)
    unknown = set(options) - set(valid)
    if unknown:
        raise ValueError(f"Unknown reset options {sorted(unknown)}; valid: {', '.join(repr(k) for k in valid)}.")
    return options


def check_action(action: Any) -> str:
    """Return ``action`` if it is a ``str``; otherwise raise a ``TypeError`` that says what an action is."""
    if not isinstance(action, str):
        raise TypeError(
            f"The action must be a str (the complete prompt); got {type(action).__name__}: {action!r:.80}."
        )
    return action


def start_episodes(
    env: PromptLoopEnv,
    rngs: Sequence[np.random.Generator],
    queries: Sequence[str | None],
    noise_seeds: Sequence[int | None],
) -> list[Episode]:
    """Begin one episode per ``rng``, with one batched preview of the starting latents.

    Each episode draws, from its own ``rng`` and in this order, the query (when None), the noise seed (when
    None) and the refinement points, exactly as ``PromptLoopEnv.reset`` always has.
    """
    starts = []
    for rng, query, noise_seed in zip(rngs, queries, noise_seeds, strict=True):
        if query is None:
            if not env.queries:
                raise ValueError("No query: pass options={'query': ...} or give the env prompts=[...].")
            query = env.queries[int(rng.integers(len(env.queries)))]
        if not isinstance(query, str):
            raise TypeError(f"options['query'] must be a str; got {type(query).__name__}.")
        if noise_seed is None:
            noise_seed = int(rng.integers(0, 2**63 - 1))
        check_int("options['noise_seed']", noise_seed, 0)
        steps = refinement_steps(env.refine_schedule, env.num_inference_steps, env.num_refinements, rng)
        traj = env.backbone.start(noise_seed, env.num_inference_steps, env.guidance_scale, env.negative_prompt)
        starts.append((traj, query, steps))
    images = env._preview(torch.cat([traj.latents for traj, _, _ in starts]))
    return [
        Episode(traj, query, steps, image, query) for (traj, query, steps), image in zip(starts, images, strict=True)
    ]


def advance_episodes(
    env: PromptLoopEnv, episodes: Sequence[Episode], actions: Sequence[str]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Apply one action per episode and denoise each to its next refinement point, all in one batch.

    1. Encode the prompts (cached), 2. one batched ``denoise`` call (the episodes may sit at different steps
    and advance by different counts), 3. for episodes that ended: one batched decode and one reward call,
    4. one batched preview of the others' x0 estimates.

    Returns:
        The rewards (0.0 except on terminal steps) and, per episode, the extra info of its terminal step
        (``final_image``, ``reward_components``; empty otherwise).
    """
    encoded = [env.backbone.encode(action) for action in actions]
    ends = [
        ep.refine_steps[ep.segment + 1] if ep.segment + 1 < env.num_refinements else ep.traj.num_steps
        for ep in episodes
    ]
    env.backbone.denoise(
        [ep.traj for ep in episodes],
        [emb for emb, _ in encoded],
        [end - ep.traj.step for ep, end in zip(episodes, ends, strict=True)],
    )
    for ep, action, (_, truncated) in zip(episodes, actions, encoded, strict=True):
        ep.prompt = action
        ep.history.append(action)
        ep.prompt_truncated = truncated
        ep.segment += 1
    rewards = np.zeros(len(episodes), dtype=np.float64)
    extras: list[dict[str, Any]] = [{} for _ in episodes]
    done = [i for i, ep in enumerate(episodes) if ep.segment == env.num_refinements]
    running = [i for i, ep in enumerate(episodes) if ep.segment < env.num_refinements]
    if done:
        latents = torch.cat([episodes[i].traj.latents for i in done])
        # A lone episode passes its generator, as the pipeline does; a batch has no single generator.
        generator = episodes[done[0]].traj.generator if len(done) == 1 else None
        final = to_uint8(env.backbone.decode(latents, generator))
        components = env.reward_fn.components(final, [episodes[i].query for i in done])
        values = env.reward_fn.combine(components)
        if env.preview == "vae":  # the final image is the last preview: no second decode
            images = resize_images(torch.from_numpy(final).permute(0, 3, 1, 2).float() / 255.0, env.preview_size)
        else:
            images = env._preview(latents)
        for j, i in enumerate(done):
            rewards[i] = float(values[j])
            extras[i] = {"final_image": final[j], "reward_components": {k: float(v[j]) for k, v in components.items()}}
            episodes[i].image = images[j]
    if running:
        images = env._preview(torch.cat([episodes[i].traj.x0 for i in running]))
        for j, i in enumerate(running):
            episodes[i].image = images[j]
    return rewards, extras


def episode_observation(ep: Episode) -> dict[str, Any]:
    """The observation of one episode (see ``PromptLoopEnv``'s Observation Space)."""
    return {
        "image": ep.image,
        "query": ep.query,
        "prompt": ep.prompt,
        "segment": ep.segment,
        "timestep": np.array([ep.traj.step / ep.traj.num_steps], dtype=np.float32),
    }


def episode_info(env: PromptLoopEnv, ep: Episode) -> dict[str, Any]:
    """The info of one episode (see ``PromptLoopEnv``'s Information)."""
    return {
        "query": ep.query,
        "prompt": ep.prompt,
        "prompts": list(ep.history),
        "prompt_truncated": ep.prompt_truncated,
        "timestep": ep.traj.step / ep.traj.num_steps,
        "denoise_step": ep.traj.step,
        "refine_steps": list(ep.refine_steps),
        "noise_seed": ep.traj.seed,
        "guidance_scale": env.guidance_scale,
    }
