"""``PromptLoopPipeline``: generate images with a trained policy, the way a diffusers pipeline is called.

>>> from promptloop_agents import PromptLoopPipeline
>>> pipe = PromptLoopPipeline.from_pretrained("toy-compose", "promptloop_agents/assets/toy-compose-policy")
>>> out = pipe(["a red circle left of a blue square", "two triangles"], seed=0)  # doctest: +SKIP
>>> out.images[0].save("out.png"); out.prompts[0]  # doctest: +SKIP

A list of prompts runs as one batch through the env's :class:`~promptloop_env.core.PromptLoopCore`: one batched
denoiser call per step for every image, one batched preview decode and one batched policy call per refinement
point. Each image's episode is fixed by its noise seed and the prompts the policy wrote, which the output keeps:
:meth:`PromptLoopPipeline.replay` remakes it from them bit for bit (same machine, same torch thread count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.model_card import GenerationSettings
from promptloop_env.backbones import DiffusersBackbone, load_backbone
from promptloop_env.core import Episode, PromptLoopCore
from promptloop_env.logs import quiet_loading
from promptloop_env.schedule import validate_schedule
from promptloop_env.validators import as_torch_dtype

MODES = ("closed-loop", "a-priori")


@dataclass
class PromptLoopPipelineOutput:
    """What :class:`PromptLoopPipeline` returns, one entry per image (prompt-major, as diffusers orders them).

    Attributes:
        images: PIL images (``output_type="pil"``) or ``uint8 [N, H, W, 3]`` (``"np"``).
        queries: the user's prompt of each image.
        prompts: per image, the prompt the policy wrote at each refinement point (in force until the next one).
        noise_seeds: per image, the integer seed of the torch generator that made its noise.
        refine_steps: per image, the denoising step at which each prompt starts to apply.
        previews: with ``return_trajectory=True``, per image the previews the policy was shown (``uint8 [S, S, 3]``,
            one per refinement point), else None.
    """

    images: list[Image.Image] | np.ndarray
    queries: list[str]
    prompts: list[list[str]]
    noise_seeds: list[int]
    refine_steps: list[list[int]]
    previews: list[list[np.ndarray]] | None = None

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per image: ``query``, ``noise_seed``, ``prompts``, ``refine_steps``."""
        return [
            {"query": q, "noise_seed": s, "prompts": p, "refine_steps": r}
            for q, s, p, r in zip(self.queries, self.noise_seeds, self.prompts, self.refine_steps, strict=True)
        ]


def no_reward(images: np.ndarray, queries: Sequence[str]) -> list[float]:
    """Generation scores nothing: the core's reward slot gets this constant."""
    return [0.0] * len(images)


def noise_seeds_for(
    count: int, seed: int | Sequence[int] | None, generator: torch.Generator | Sequence[torch.Generator] | None
) -> list[int]:
    """One integer noise seed per image.

    ``seed=s`` gives image ``i`` the seed ``s + i``; a list gives one per image. A ``torch.Generator`` contributes
    its ``initial_seed()`` the same way (a list: one generator per image), so ``generator=torch.Generator()
    .manual_seed(s)`` starts image 0 from the noise diffusers draws with it; the generator is not advanced. With
    neither, fresh random seeds (returned in the output).

    >>> noise_seeds_for(3, 7, None), noise_seeds_for(2, None, torch.Generator().manual_seed(5))
    ([7, 8, 9], [5, 6])
    """
    if seed is not None and generator is not None:
        raise ValueError("Pass seed= or generator=, not both.")
    if generator is not None:
        seed = (
            generator.initial_seed()
            if isinstance(generator, torch.Generator)
            else [int(g.initial_seed()) for g in generator]
        )
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2**62))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(count)]
    seeds = [int(s) for s in seed]
    if len(seeds) != count:
        raise ValueError(f"Got {len(seeds)} seeds (or generators) for {count} images: give one per image.")
    return seeds


class PromptLoopPipeline:
    """A diffusion backbone and a prompt-refinement policy, called like a diffusers pipeline.

    Args:
        backbone: anything ``gym.make("PromptLoop-v0", backbone=...)`` accepts (registry name, folder, hub id,
            loaded ``DiffusionPipeline``) or a loaded backbone.
        policy: the :class:`~promptloop_agents.policies.mllm.MLLMAgent` that writes the prompts, or None (then
            only ``num_refinements=0``, plain sampling, runs).
        generation: the defaults of every call; by default the policy's own (``policy.generation``), which fix
            the preview it was trained to see.
        device, torch_dtype: where and in which precision a backbone given by name is loaded.
        local_files_only: forwarded to ``from_pretrained``.
        progress: show the libraries' loading bars and messages (off by default, as in the env).
    """

    def __init__(
        self,
        backbone: Any,
        policy: MLLMAgent | None = None,
        generation: GenerationSettings | None = None,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | str | None = None,
        local_files_only: bool = False,
        progress: bool = False,
    ) -> None:
        with quiet_loading(progress):
            self.backbone: DiffusersBackbone = load_backbone(
                backbone, device=device, torch_dtype=as_torch_dtype(torch_dtype), local_files_only=local_files_only
            )
        self.policy = policy
        self.generation = generation or (policy.generation if policy is not None else GenerationSettings())
        self._cores: dict[tuple, PromptLoopCore] = {}

    @classmethod
    def from_pretrained(
        cls,
        backbone: Any,
        policy: str | MLLMAgent | None = None,
        *,
        torch_dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        local_files_only: bool = False,
        progress: bool = False,
        **policy_overrides: Any,
    ) -> PromptLoopPipeline:
        """Load a backbone and a saved policy (folder, hub id, or a shipped policy's name: ``toy-compose``,
        ``shipped``) onto ``device`` in ``torch_dtype``; ``progress=True`` shows the libraries' loading bars.

        ``policy_overrides`` replace the policy's saved settings (e.g. ``max_new_tokens=40``); the policy acts
        greedily (its most likely prompt, as deployed) unless its generation settings or ``do_sample=True`` say
        otherwise.
        """
        from promptloop_agents.policies.toy_policy import SHIPPED_POLICIES

        dtype = as_torch_dtype(torch_dtype)
        if isinstance(policy, str) or hasattr(policy, "__fspath__"):
            source = SHIPPED_POLICIES.get(str(policy), policy)
            with quiet_loading(progress):
                agent = MLLMAgent.from_pretrained(str(source), torch_dtype=dtype, device=device)
            agent.do_sample = policy_overrides.pop("do_sample", agent.generation.do_sample)
            for key, value in policy_overrides.items():
                if key not in agent.settings():
                    raise ValueError(f"Unknown policy setting {key!r}; known: {sorted(agent.settings())}.")
                setattr(agent, key, value)
            policy = agent
        elif policy_overrides:
            raise ValueError("policy_overrides need a policy folder or hub id; set them on the MLLMAgent instead.")
        return cls(
            backbone, policy, device=device, torch_dtype=dtype, local_files_only=local_files_only, progress=progress
        )

    def to(self, device: str | torch.device) -> PromptLoopPipeline:
        """Move the backbone's pipeline and the policy to ``device`` (the backbone's weights are shared with
        every env that uses them, as a diffusers pipeline's are); returns ``self``."""
        bb = self.backbone
        bb.pipe.to(device)
        # A fresh wrapper: the backbone resolves its device once.
        self.backbone = type(bb)(
            bb.pipe,
            default_guidance_scale=bb.default_guidance_scale,
            taesd=bb.taesd,
            latent_rgb=bb.latent_rgb,
            default_prompts=bb.default_prompts,
        )
        self._cores.clear()
        if self.policy is not None:
            self.policy.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """The backbone's execution device."""
        return self.backbone.device

    # -- generation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_refinements: int | None = None,
        refine_schedule: str | Sequence[int] | None = None,
        mode: str = "closed-loop",
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        seed: int | Sequence[int] | None = None,
        output_type: str = "pil",
        return_trajectory: bool = False,
        num_images_per_prompt: int = 1,
        negative_prompt: str | None = None,
        batch_size: int | None = None,
    ) -> PromptLoopPipelineOutput:
        """Generate one image per prompt (times ``num_images_per_prompt``), the policy refining each prompt.

        Args:
            prompt: the user's prompt or a list of them.
            num_inference_steps, guidance_scale, num_refinements, refine_schedule: as the env's arguments; None
                takes the policy's generation settings. ``num_refinements=0`` is plain sampling (no policy).
            mode: ``"closed-loop"`` (the policy sees the preview at each refinement point) or ``"a-priori"``
                (it writes every prompt from the query alone; no previews are decoded).
            generator, seed: the noise (see :func:`noise_seeds_for`).
            output_type: ``"pil"`` or ``"np"`` (``uint8 [N, H, W, 3]``).
            return_trajectory: also return the previews the policy was shown.
            num_images_per_prompt: images per prompt, each with its own noise seed.
            negative_prompt: as in diffusers.
            batch_size: at most this many images per batch (None: all at once).
        """
        queries = [prompt] if isinstance(prompt, str) else list(prompt)
        if not queries or not all(isinstance(q, str) for q in queries):
            raise TypeError("prompt must be a str or a non-empty list of str.")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
        if output_type not in ("pil", "np"):
            raise ValueError(f"output_type must be 'pil' or 'np'; got {output_type!r}.")
        queries = [q for q in queries for _ in range(int(num_images_per_prompt))]
        seeds = noise_seeds_for(len(queries), seed, generator)
        settings = self.generation
        refinements = settings.num_refinements if num_refinements is None else int(num_refinements)
        if refinements > 0 and self.policy is None:
            raise ValueError("This pipeline has no policy: pass num_refinements=0 (plain sampling) or a policy.")
        steps = settings.num_inference_steps if num_inference_steps is None else int(num_inference_steps)
        schedule = refine_schedule if refine_schedule is not None else settings.refine_schedule
        if refine_schedule is None and num_refinements is not None and refinements != settings.num_refinements:
            schedule = "uniform"  # the saved explicit schedule has another length
        looks = refinements > 0 and mode == "closed-loop"
        core = self._core(
            num_inference_steps=steps,
            num_refinements=max(refinements, 1),
            refine_schedule=schedule if refinements > 0 else "uniform",
            guidance_scale=settings.guidance_scale if guidance_scale is None else guidance_scale,
            negative_prompt=negative_prompt,
            preview=settings.preview if (looks or return_trajectory) else "none",
        )
        size = batch_size or len(queries)
        episodes: list[Episode] = []
        previews: list[list[np.ndarray]] = []
        for start in range(0, len(queries), size):
            batch_seeds = seeds[start : start + size]
            batch, shown = self._run(core, queries[start : start + size], batch_seeds, refinements, looks)
            episodes += batch
            previews += shown
        finals = np.stack([ep.final_image for ep in episodes])
        images = finals if output_type == "np" else [Image.fromarray(image) for image in finals]
        return PromptLoopPipelineOutput(
            images=images,
            queries=[ep.query for ep in episodes],
            prompts=[list(ep.history) for ep in episodes] if refinements > 0 else [[] for _ in episodes],
            noise_seeds=[ep.traj.seed for ep in episodes],
            refine_steps=[list(ep.refine_steps) for ep in episodes] if refinements > 0 else [[] for _ in episodes],
            previews=previews if return_trajectory else None,
        )

    def _run(
        self, core: PromptLoopCore, queries: list[str], seeds: list[int], refinements: int, looks: bool
    ) -> tuple[list[Episode], list[list[np.ndarray]]]:
        """One batch: start every episode, then per refinement point one batched policy call and one batched
        advance (denoising to the next point, then one batched preview decode or, at the end, the final decode)."""
        # Each episode's own rng draws a random schedule's points, so they too follow from its seed.
        episodes = core.start([np.random.default_rng(s) for s in seeds], queries, seeds)
        shown: list[list[np.ndarray]] = [[] for _ in episodes]
        if refinements == 0:
            core.advance(episodes, queries)
            return episodes, shown
        while not episodes[0].terminated:
            observations = [core.observation(ep) for ep in episodes]
            for seen, obs in zip(shown, observations, strict=True):
                seen.append(obs["image"])
            core.advance(episodes, self._act(observations, looks, seeds))
        return episodes, shown

    def _act(self, observations: list[dict[str, Any]], looks: bool, seeds: list[int]) -> list[str]:
        """One batched policy call; a sampling policy draws from a torch RNG seeded by the batch's noise seeds and
        the refinement point, so a call is reproducible and torch's global RNG is left as it was."""
        assert self.policy is not None
        if not self.policy.do_sample:
            return self.policy.sample(observations, with_images=looks).prompts
        segment = int(observations[0]["segment"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([*seeds, segment]).generate_state(1)[0]))
            return self.policy.sample(observations, with_images=looks).prompts

    def replay(
        self,
        prompts: Sequence[str],
        seed: int,
        refine_steps: Sequence[int] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        output_type: str = "pil",
    ) -> Image.Image | np.ndarray:
        """Remake one image from its noise seed and the prompts written at its refinement points (no policy).

        Given an image's ``noise_seeds[i]``, ``prompts[i]`` and ``refine_steps[i]`` from a call with the same step
        count and guidance, the result equals that image bit for bit when the call made it in a batch of one, on
        the same machine with the same torch thread count; an image made in a larger batch is matched within the
        hardware's float tolerance (batched kernels may round differently).
        """
        prompts = list(prompts)
        if not prompts:
            raise ValueError("replay needs at least one prompt (the one in force from step 0).")
        steps = self.generation.num_inference_steps if num_inference_steps is None else int(num_inference_steps)
        core = self._core(
            num_inference_steps=steps,
            num_refinements=len(prompts),
            refine_schedule=list(refine_steps) if refine_steps is not None else "uniform",
            guidance_scale=self.generation.guidance_scale if guidance_scale is None else guidance_scale,
            negative_prompt=negative_prompt,
            preview="none",
        )
        (episode,) = core.start([np.random.default_rng(seed)], [prompts[0]], [int(seed)])
        for action in prompts:
            core.advance([episode], [action])
        image = episode.final_image
        return image if output_type == "np" else Image.fromarray(image)

    def _core(self, **settings: Any) -> PromptLoopCore:
        """The core of these settings, built once (they share the backbone; episodes own their schedulers)."""
        schedule = settings["refine_schedule"]
        if not isinstance(schedule, str):
            settings["refine_schedule"] = tuple(int(s) for s in schedule)
        validate_schedule(settings["refine_schedule"], settings["num_inference_steps"], settings["num_refinements"])
        key = tuple(sorted(settings.items()))
        if key not in self._cores:
            self._cores[key] = PromptLoopCore(
                backbone=self.backbone,
                reward=no_reward,
                prompts=["-"],
                preview_size=self.generation.preview_size,
                **settings,
            )
        return self._cores[key]
