"""``PromptLoopConfig``: the arguments of ``PromptLoop-v0``, declared once, with their help and validation.

:class:`~promptloop_env.env.PromptLoopEnv`, :class:`~promptloop_env.core.PromptLoopCore` and the batched
:class:`~promptloop_env.vector_env.PromptLoopVectorEnv` take these arguments as keywords (or a config object), and
the command line's env section (``promptloop_agents.configs.EnvConfig``) derives its fields from them.

>>> config = PromptLoopConfig(backbone="tiny", num_inference_steps=4, num_refinements=2, refine_schedule="0,2")
>>> config.refine_schedule, config.reward
((0, 2), None)
>>> PromptLoopConfig(num_refinements=30)
Traceback (most recent call last):
...
ValueError: num_refinements=30 exceeds num_inference_steps=20: each action needs at least one denoising step.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from promptloop_env.schedule import validate_schedule
from promptloop_env.validators import as_torch_dtype, check_int, check_optional_str

RENAMED_ARGUMENTS = {"backbone_device": "device", "backbone_dtype": "torch_dtype"}
"""Old names of arguments (the command line's before the env config), read with a ``FutureWarning``."""


def env_field(default: Any, help: str) -> Any:  # noqa: A002  (the argparse word)
    """A config field whose ``metadata["help"]`` is its one description (docstrings and ``--help`` read it)."""
    return field(default=default, metadata={"help": help})


@dataclass(kw_only=True)
class PromptLoopConfig:
    """The validated arguments of ``PromptLoop-v0`` (every field's help is in ``fields(PromptLoopConfig)``).

    Validation that needs no model runs here, on construction (types, ranges, the schedule, the dtype); what
    needs the backbone (a known name, a reward of its world, readable queries) runs in the core.
    """

    backbone: Any = env_field(
        "toy-shapes",
        "Diffusion backbone: a registered name (promptloop_env.backbones.BACKBONES), a local folder or hub id of a "
        "diffusers pipeline, or a loaded pipeline (weights are shared between envs).",
    )
    reward: Any = env_field(
        None,
        "Terminal reward: a registered name (promptloop_env.rewards.REWARDS), a callable (images uint8 [B,H,W,3], "
        "queries) -> floats, or {name_or_callable: weight} (weighted sum, parts in info['reward_components']); "
        "None: a toy backbone's own world reward (other backbones must name one).",
    )
    prompts: Any = env_field(
        None,
        "Queries drawn at reset: a list of str, a registered prompt set (promptloop_env.prompts.PROMPT_SETS), a "
        "path to a .txt / .jsonl file, or None: the backbone's world's default set.",
    )
    num_inference_steps: int = env_field(20, "Denoising steps per episode.")
    num_refinements: int = env_field(5, "N_R: how many prompts the agent writes per episode (its actions).")
    refine_schedule: str | Sequence[int] = env_field(
        "uniform",
        "When the agent acts: 'uniform' (evenly spaced), 'random' (redrawn every episode) or strictly increasing "
        "step indices starting at 0, one per action (a list or '0,9,11,13,15').",
    )
    guidance_scale: float | None = env_field(None, "Classifier-free guidance scale; None: the backbone's default.")
    negative_prompt: str | None = env_field(None, "Negative prompt, as in diffusers.")
    preview: str = env_field(
        "vae",
        "What the agent sees of the x0 estimate (promptloop_env.previews.PREVIEWS): vae | taesd | latent_rgb | none.",
    )
    preview_size: int = env_field(256, "Side in pixels of the preview images.")
    taesd: Any = env_field(
        None, "preview='taesd': the AutoencoderTiny (instance, folder or hub id); None: the family's."
    )
    device: str | torch.device | None = env_field(None, "Device of the backbone (and of rewards built by name).")
    torch_dtype: torch.dtype | str | None = env_field(
        None, "Precision of the backbone: a torch.dtype or its name (float16, bfloat16, float32); None: float32."
    )
    local_files_only: bool = env_field(False, "Load weights from the local cache only (from_pretrained's option).")
    cpu_offload: bool = env_field(
        False, "Keep each model on the CPU until its turn on the accelerator (enable_model_cpu_offload)."
    )
    progress: bool = env_field(False, "Show the libraries' loading bars and messages while models load.")

    def __post_init__(self) -> None:
        self.num_inference_steps = check_int("num_inference_steps", self.num_inference_steps, 1)
        self.num_refinements = check_int("num_refinements", self.num_refinements, 1)
        self.preview_size = check_int("preview_size", self.preview_size, 8)
        if self.num_refinements > self.num_inference_steps:
            raise ValueError(
                f"num_refinements={self.num_refinements} exceeds num_inference_steps={self.num_inference_steps}: "
                "each action needs at least one denoising step."
            )
        self.refine_schedule = validate_schedule(self.refine_schedule, self.num_inference_steps, self.num_refinements)
        if self.guidance_scale is not None:
            if isinstance(self.guidance_scale, bool) or not isinstance(self.guidance_scale, (int, float)):
                raise TypeError(f"guidance_scale must be a number or None; got {type(self.guidance_scale).__name__}.")
            self.guidance_scale = float(self.guidance_scale)
        self.negative_prompt = check_optional_str("negative_prompt", self.negative_prompt)
        if not isinstance(self.preview, str):
            raise TypeError(f"preview must be a preview name (str); got {type(self.preview).__name__}.")
        self._check_names()
        self.torch_dtype = as_torch_dtype(self.torch_dtype)
        for name in ("local_files_only", "cpu_offload", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool; got {type(getattr(self, name)).__name__}.")

    def _check_names(self) -> None:
        """Unknown preview and reward names fail here, before any model loads."""
        from promptloop_env.previews import PREVIEWS
        from promptloop_env.rewards import REWARDS

        PREVIEWS[self.preview]
        parts = list(self.reward) if isinstance(self.reward, Mapping) else [self.reward]
        for part in parts:
            if isinstance(part, str):
                REWARDS[part]

    @classmethod
    def from_kwargs(cls, config: PromptLoopConfig | None = None, **kwargs: Any) -> PromptLoopConfig:
        """``config`` with ``kwargs`` replacing its fields (or a new config from ``kwargs``).

        Old argument names (:data:`RENAMED_ARGUMENTS`) are read with a ``FutureWarning``.

        Raises:
            TypeError: an argument that is no field (the message lists the valid ones).
        """
        kwargs = rename_arguments(kwargs, "PromptLoop-v0")
        unknown = sorted(set(kwargs) - set(argument_names()))
        if unknown:
            # Worded as Python's own error, which wrappers (TorchRL's GymEnv) recognise and retry without it.
            raise TypeError(
                f"PromptLoop-v0 got an unexpected keyword argument {unknown[0]!r}; "
                f"valid: {', '.join(argument_names())}."
            )
        if config is None:
            return cls(**kwargs)
        if not isinstance(config, PromptLoopConfig):
            raise TypeError(f"config must be a PromptLoopConfig; got {type(config).__name__}.")
        return dataclasses.replace(config, **kwargs)


def config_field(name: str, default: Any = dataclasses.MISSING, help_suffix: str = "") -> Any:  # noqa: A002
    """A dataclass field that repeats the env argument ``name``: its help (plus ``help_suffix``) and its default.

    For configs that pass the env's arguments on (the command line's env section), so that each is described
    once, here.

    >>> from dataclasses import dataclass, fields
    >>> @dataclass
    ... class Section:
    ...     preview_size: int = config_field("preview_size")
    >>> Section().preview_size, fields(Section)[0].metadata["help"]
    (256, 'Side in pixels of the preview images.')
    """
    source = {f.name: f for f in dataclasses.fields(PromptLoopConfig)}[name]
    value = source.default if default is dataclasses.MISSING else default
    return env_field(value, f"{source.metadata['help']} {help_suffix}".strip())


def argument_names() -> tuple[str, ...]:
    """The names of the env's arguments (besides ``render_mode``), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(PromptLoopConfig))


def rename_arguments(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` with old argument names (:data:`RENAMED_ARGUMENTS`) renamed, each with a ``FutureWarning``.

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     rename_arguments({"backbone_dtype": "float16"}, "env")
    {'torch_dtype': 'float16'}
    """
    out = dict(values)
    for old, new in RENAMED_ARGUMENTS.items():
        if old in out:
            if new in out:
                raise ValueError(f"{where}: {old!r} is the old name of {new!r}; give only {new!r}.")
            warnings.warn(
                f"{where}: {old!r} is now called {new!r} (the env's own name); the old name will stop working "
                "in the next release.",
                FutureWarning,
                stacklevel=3,
            )
            out[new] = out.pop(old)
    return out


def arguments_doc(indent: str = "    ") -> str:
    """The env's arguments as a Markdown list (name, default, help): the ``Arguments`` section of the docstrings."""
    lines = []
    for f in dataclasses.fields(PromptLoopConfig):
        lines.append(f"{indent}* ``{f.name}`` (default ``{f.default!r}``): {f.metadata['help']}")
    return "\n".join(lines)
