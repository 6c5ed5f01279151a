"""``PromptLoopCore``: what :class:`PromptLoopEnv` and the batched vector env share.

The core holds the validated configuration and the shared backbone, reward, preview and refinement schedule,
and runs the phases of an episode on lists of :class:`Episode`: ``start`` (new episodes, one batched preview),
``advance`` (apply one action per episode, one batched denoising call), ``observation`` and ``info``. The single
env calls the phases with lists of one, which runs exactly the operations of one pipeline call (the replay
guarantee depends on that); the vector env calls them with all its sub-episodes at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from promptloop_env.backbones import load_backbone
from promptloop_env.backbones.base import Trajectory, to_uint8
from promptloop_env.config import PromptLoopConfig
from promptloop_env.logs import quiet_loading
from promptloop_env.previews import make_preview
from promptloop_env.prompts import resolve_prompts
from promptloop_env.rewards import make_reward
from promptloop_env.rewards.worlds import check_reward_world, default_prompts, world_reward
from promptloop_env.schedule import refinement_steps
from promptloop_env.spaces import fit_text, observation_space, prompt_space
from promptloop_env.validators import check_cpu_offload, check_int

logger = logging.getLogger(__name__)


@dataclass
class Episode:
    """Everything one running episode holds besides the core's configuration.

    Attributes:
        traj: the backbone's sampling run (latents, scheduler, generator).
        query: the user's original query (what the reward scores against).
        refine_steps: the denoising step at which each action starts to apply.
        image: the latest preview, ``uint8 [S, S, 3]``.
        prompt: the prompt now in force (the query before the first action).
        history: the actions taken so far.
        prompt_truncated: whether the text encoder truncated the last action.
        segment: how many actions have been taken.
        final_image: the decoded final image, ``uint8 [H, W, 3]``, once the episode has terminated.
        reward_components: the reward's parts on the final image, once the episode has terminated.
    """

    traj: Trajectory
    query: str
    refine_steps: tuple[int, ...]
    image: np.ndarray
    prompt: str
    history: list[str] = field(default_factory=list)
    prompt_truncated: bool = False
    segment: int = 0
    final_image: np.ndarray | None = None
    reward_components: dict[str, float] | None = None

    @property
    def terminated(self) -> bool:
        """Whether every action of the episode has been taken (its last segment ran to the end)."""
        return self.segment == len(self.refine_steps)


class PromptLoopCore:
    """The validated configuration of ``PromptLoop-v0`` with its backbone, reward, preview and schedule.

    Its arguments are a :class:`~promptloop_env.config.PromptLoopConfig` and/or its fields as keywords (those of
    :class:`~promptloop_env.env.PromptLoopEnv` except ``render_mode``). Weights are shared: two cores built with
    the same backbone name, device and dtype hold the same backbone object, while every episode gets its own
    scheduler and generator.

    >>> core = PromptLoopCore(backbone="tiny", reward="jpeg-incompressibility", num_inference_steps=4,
    ...                       num_refinements=2, preview="latent_rgb", preview_size=32)
    >>> (episode,) = core.start([np.random.default_rng(0)], ["a red circle"], [None])
    >>> core.advance([episode], ["a bright red circle"]).tolist(), core.observation(episode)["segment"]
    ([0.0], 1)

    Attributes:
        config: the validated arguments.
        backbone: the shared :class:`~promptloop_env.backbones.base.DiffusersBackbone`.
        reward_fn: the reward, a :class:`~promptloop_env.rewards.WeightedReward`.
        queries: the queries drawn from when a reset names none.
        guidance_scale: the guidance scale in force (the backbone's default when the argument was None).
        observation_space: the observation space of one episode.
        action_space: the space of one action (a prompt).
    """

    def __init__(self, config: PromptLoopConfig | None = None, /, **kwargs: Any) -> None:
        self.config = config = PromptLoopConfig.from_kwargs(config, **kwargs)
        self.num_inference_steps = config.num_inference_steps
        self.num_refinements = config.num_refinements
        self.preview_size = config.preview_size
        self.refine_schedule = config.refine_schedule
        self.negative_prompt = config.negative_prompt
        # Only a requested offload becomes a backbone option: the option is part of the key that shares backbones.
        offload = {"cpu_offload": True} if check_cpu_offload(config.cpu_offload, config.device) else {}
        with quiet_loading(config.progress):
            self.backbone = load_backbone(
                config.backbone,
                device=config.device,
                torch_dtype=config.torch_dtype,
                local_files_only=config.local_files_only,
                **offload,
            )
            self.reward_fn = make_reward(
                world_reward(config.reward, self.backbone), device=self.backbone.device, torch_dtype=config.torch_dtype
            )
            check_reward_world(self.reward_fn, self.backbone)
            self.queries = resolve_prompts(config.prompts, default_prompts(self.reward_fn, self.backbone))
            self.reward_fn.check_queries(self.queries, "prompts")
            self.guidance_scale = (
                self.backbone.default_guidance_scale if config.guidance_scale is None else config.guidance_scale
            )
            self.preview = config.preview
            self._preview = make_preview(
                config.preview, self.backbone, self.preview_size, config.taesd, config.local_files_only
            )
        self.observation_space = observation_space(self.preview_size, self.num_refinements)
        self.action_space = prompt_space()
        self._warned_truncation = False

    # -- phases -------------------------------------------------------------------------------------
    def start(
        self,
        rngs: Sequence[np.random.Generator],
        queries: Sequence[str | None],
        noise_seeds: Sequence[int | None],
    ) -> list[Episode]:
        """Begin one episode per ``rng``, with one batched preview of the starting latents.

        Each episode draws, from its own ``rng`` and in this order, the query (when None), the noise seed (when
        None) and the refinement points.
        """
        starts = []
        for rng, query, noise_seed in zip(rngs, queries, noise_seeds, strict=True):
            if query is None:
                if not self.queries:
                    raise ValueError("No query: pass options={'query': ...} or give the env prompts=[...].")
                query = self.queries[int(rng.integers(len(self.queries)))]
            else:
                if not isinstance(query, str):
                    raise TypeError(f"options['query'] must be a str; got {type(query).__name__}.")
                self.reward_fn.check_queries([query], "options['query']")
            if noise_seed is None:
                noise_seed = int(rng.integers(0, 2**63 - 1))
            check_int("options['noise_seed']", noise_seed, 0)
            steps = refinement_steps(self.refine_schedule, self.num_inference_steps, self.num_refinements, rng)
            traj = self.backbone.start(noise_seed, self.num_inference_steps, self.guidance_scale, self.negative_prompt)
            starts.append((traj, query, steps))
        images = self._preview(torch.cat([traj.latents for traj, _, _ in starts]))
        return [
            Episode(traj, query, steps, image, query)
            for (traj, query, steps), image in zip(starts, images, strict=True)
        ]

    def advance(self, episodes: Sequence[Episode], actions: Sequence[str]) -> np.ndarray:
        """Apply one action per episode and denoise each to its next refinement point, all in one batch.

        1. Encode the prompts (cached), 2. one batched ``denoise`` call (the episodes may sit at different steps
        and advance by different counts), 3. for episodes that end: one batched decode and one reward call, whose
        results the episodes keep (``final_image``, ``reward_components``), 4. one batched preview of the others'
        x0 estimates.

        Returns:
            The rewards, ``float64 [len(episodes)]``: 0.0 except on terminal steps.
        """
        encoded = [self.backbone.encode(action) for action in actions]
        if not self._warned_truncation and any(truncated for _, truncated in encoded):
            self._warned_truncation = True  # said once here; every step says it in info["prompt_truncated"]
            first = next(action for action, (_, truncated) in zip(actions, encoded, strict=True) if truncated)
            # A log record, not a warning: long prompts are legal actions (check_env takes warnings as faults).
            logger.warning(
                "A prompt is longer than the text encoder's window and is truncated as diffusers truncates it; "
                "info['prompt_truncated'] says so at every such step (logged once): %.80r...",
                first,
            )
        ends = [
            ep.refine_steps[ep.segment + 1] if ep.segment + 1 < self.num_refinements else ep.traj.num_steps
            for ep in episodes
        ]
        self.backbone.denoise(
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
        done = [i for i, ep in enumerate(episodes) if ep.terminated]
        running = [i for i, ep in enumerate(episodes) if not ep.terminated]
        if done:
            latents = torch.cat([episodes[i].traj.latents for i in done])
            # A lone episode passes its generator, as the pipeline does; a batch has no single generator.
            generator = episodes[done[0]].traj.generator if len(done) == 1 else None
            final = to_uint8(self.backbone.decode(latents, generator))
            components = self.reward_fn.components(final, [episodes[i].query for i in done])
            values = self.reward_fn.combine(components)
            images = self._preview.of_final(latents, final)
            for j, i in enumerate(done):
                rewards[i] = float(values[j])
                episodes[i].image = images[j]
                episodes[i].final_image = final[j]
                episodes[i].reward_components = {k: float(v[j]) for k, v in components.items()}
        if running:
            images = self._preview(torch.cat([episodes[i].traj.x0 for i in running]))
            for j, i in enumerate(running):
                episodes[i].image = images[j]
        return rewards

    def observation(self, ep: Episode) -> dict[str, Any]:
        """The observation of one episode (see ``PromptLoopEnv``'s Observation Space).

        ``query`` and ``prompt`` are fitted into their ``Text`` space (:func:`~promptloop_env.spaces.fit_text`);
        :meth:`info` has them in full.
        """
        return {
            "image": ep.image,
            "query": fit_text(ep.query),
            "prompt": fit_text(ep.prompt),
            "segment": ep.segment,
            "timestep": np.array([ep.traj.step / ep.traj.num_steps], dtype=np.float32),
        }

    def info(self, ep: Episode) -> dict[str, Any]:
        """The info of one episode (see ``PromptLoopEnv``'s Information); the terminal step's has its results."""
        info = {
            "query": ep.query,
            "prompt": ep.prompt,
            "prompts": list(ep.history),
            "prompt_truncated": ep.prompt_truncated,
            "timestep": ep.traj.step / ep.traj.num_steps,
            "denoise_step": ep.traj.step,
            "refine_steps": list(ep.refine_steps),
            "noise_seed": ep.traj.seed,
            "guidance_scale": self.guidance_scale,
        }
        if ep.terminated:
            info["final_image"] = ep.final_image
            info["reward_components"] = dict(ep.reward_components or {})
        return info
