"""Model cards and generation settings of saved policies: what a user needs to trust and run a shared policy.

A saved policy folder holds, beside its weights and processor, ``promptloop_generation.json`` (the settings it was
trained to act under, which :class:`~promptloop_agents.pipeline.PromptLoopPipeline` uses as its defaults) and a
``README.md`` model card: YAML metadata the hub indexes (base model, library, tags, and a ``promptloop`` block with
the backbone and reward trained with, the recipe and the held-out results), then the same facts for people.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

AGENT_FILE = "promptloop_agent.json"
GENERATION_FILE = "promptloop_generation.json"
CARD_FILE = "README.md"
CARD_TAGS = ("promptloop", "prompt-refinement", "text-to-image", "reinforcement-learning", "grpo")


@dataclass
class GenerationSettings:
    """How a policy was trained to act: the defaults of the pipeline that runs it.

    ``preview`` and ``preview_size`` fix what the policy sees (the x0 preview's decoder and side before the policy's
    own ``image_size`` resize), so they belong to the policy; the backbone and the step count are only defaults.

    Attributes:
        backbone: the backbone trained with (a registry name, folder or hub id), or None.
        num_inference_steps: denoising steps.
        num_refinements: refinement points (policy calls) per image.
        refine_schedule: ``"uniform"``, ``"random"`` or explicit step indices.
        guidance_scale: None = the backbone's default.
        preview: the preview decoder (``"vae"``, ``"taesd"``, ``"latent_rgb"``).
        preview_size: the preview's side in pixels.
        do_sample: sample the policy's prompts (True) or take its most likely ones (False, as deployed).
    """

    backbone: str | None = None
    num_inference_steps: int = 20
    num_refinements: int = 5
    refine_schedule: str | list[int] = "uniform"
    guidance_scale: float | None = None
    preview: str = "vae"
    preview_size: int = 256
    do_sample: bool = False

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GenerationSettings:
        """From a dict; unknown keys raise a ``ValueError`` naming the known ones."""
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Unknown generation settings {sorted(unknown)}; known: {sorted(known)}.")
        settings = dict(values)
        if isinstance(settings.get("refine_schedule"), tuple):
            settings["refine_schedule"] = list(settings["refine_schedule"])
        return cls(**settings)

    @classmethod
    def load(cls, folder: str | Path) -> GenerationSettings:
        """The folder's ``promptloop_generation.json``, or the defaults when it has none."""
        path = Path(folder) / GENERATION_FILE
        return cls.from_dict(json.loads(path.read_text())) if path.exists() else cls()

    def save(self, folder: str | Path) -> None:
        """Write ``promptloop_generation.json`` into ``folder``."""
        (Path(folder) / GENERATION_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


@dataclass
class EvalRow:
    """One held-out result: an agent's mean score under a metric with its 95% interval."""

    agent: str
    metric: str
    mean: float
    ci_low: float
    ci_high: float
    n: int | None = None
    backbone: str | None = None


@dataclass
class PolicyCard:
    """What a policy's model card says about its training and its held-out results.

    Attributes:
        base_model: the model the policy was fine-tuned from (hub id or a description).
        backbone: the diffusion backbone it was trained with.
        reward: the reward it was trained on.
        recipe: how it was trained (a recipe file, a command, or a few words).
        evaluation: held-out results (:class:`EvalRow` or dicts of its fields), shown as a table with intervals.
        evaluation_protocol: one line on the held-out episodes (queries, seeds, interval method).
        description: free text placed under the title.
        license: an SPDX id for the metadata, or None.
    """

    base_model: str | None = None
    backbone: str | None = None
    reward: str | None = None
    recipe: str | None = None
    evaluation: list[EvalRow] = field(default_factory=list)
    evaluation_protocol: str | None = None
    description: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        self.evaluation = [row if isinstance(row, EvalRow) else EvalRow(**row) for row in self.evaluation]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PolicyCard:
        """From the ``promptloop`` block of a card's metadata (unknown keys ignored, for cards of newer versions)."""
        return cls(**{key: values[key] for key in cls.__dataclass_fields__ if key in values})

    def metadata(self) -> dict[str, Any]:
        """The ``promptloop`` block of the YAML metadata (None fields left out)."""
        out = {key: value for key, value in asdict(self).items() if value not in (None, [])}
        out.pop("description", None)
        return out


def render_card(card: PolicyCard, settings: GenerationSettings, *, adapter: bool, title: str | None = None) -> str:
    """The model card's text: YAML metadata, then usage, training and held-out sections.

    >>> text = render_card(PolicyCard(base_model="Qwen/Qwen2.5-VL-3B-Instruct", backbone="sd15"),
    ...                    GenerationSettings(), adapter=True)
    >>> text.splitlines()[0], "base_model: Qwen/Qwen2.5-VL-3B-Instruct" in text, "library_name: peft" in text
    ('---', True, True)
    """
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        base_model=card.base_model if card.base_model and card.base_model.count("/") == 1 else None,
        library_name="peft" if adapter else "transformers",
        license=card.license,
        pipeline_tag="image-text-to-text",
        tags=list(CARD_TAGS),
        promptloop=card.metadata(),
    )
    unknown = "not recorded"
    lines = ["---", data.to_yaml(), "---", "", f"# {title or 'PromptLoop policy'}", ""]
    if card.description:
        lines += [card.description.strip(), ""]
    lines += [
        "A prompt-refinement policy for [PromptLoop](https://arxiv.org/abs/2510.00430): while a frozen",
        "text-to-image diffusion model samples, it looks at the model's current estimate of the final image and",
        "rewrites the prompt.",
        "",
        "## Use",
        "",
        "```python",
        "from promptloop_agents import PromptLoopPipeline",
        "",
        f'pipe = PromptLoopPipeline.from_pretrained("{settings.backbone or "BACKBONE"}", "PATH_OR_HUB_ID")',
        'out = pipe("a red circle left of a blue square", seed=0)',
        "out.images[0].save('out.png'); print(out.prompts[0])",
        "```",
        "",
        "## Training",
        "",
        f"- base model: {card.base_model or unknown}",
        f"- backbone: {card.backbone or unknown}",
        f"- reward: {card.reward or unknown}",
        f"- recipe: {card.recipe or unknown}",
        f"- acts at {settings.num_refinements} refinement points ({_schedule_text(settings.refine_schedule)}) of "
        f"{settings.num_inference_steps} denoising steps, seeing `{settings.preview}` previews of "
        f"{settings.preview_size} pixels (`{GENERATION_FILE}`)",
        "",
        "## Held-out evaluation",
        "",
    ]
    lines += evaluation_table(card.evaluation, card.evaluation_protocol)
    return "\n".join(lines).rstrip() + "\n"


def _schedule_text(schedule: str | Sequence[int]) -> str:
    return schedule if isinstance(schedule, str) else "steps " + ", ".join(str(s) for s in schedule)


def evaluation_table(rows: Sequence[EvalRow], protocol: str | None = None) -> list[str]:
    """Markdown lines: one row per (backbone, agent), one column per metric, ``mean [low, high]``."""
    if not rows:
        return ["No held-out results were recorded with this policy."]
    metrics = list(dict.fromkeys(row.metric for row in rows))
    keys = list(dict.fromkeys((row.backbone, row.agent) for row in rows))
    cells = {(row.backbone, row.agent, row.metric): row for row in rows}
    with_backbone = any(backbone for backbone, _ in keys)
    head = (["backbone"] if with_backbone else []) + ["agent", *metrics]
    out = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for backbone, agent in keys:
        values = []
        for metric in metrics:
            row = cells.get((backbone, agent, metric))
            values.append("-" if row is None else f"{row.mean:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]")
        out.append(f"| {' | '.join(([backbone or ''] if with_backbone else []) + [agent, *values])} |")
    out += ["", protocol or "Mean [95% interval]."]
    return out


def write_card(
    folder: str | Path,
    card: PolicyCard,
    settings: GenerationSettings,
    *,
    adapter: bool,
    title: str | None = None,
) -> Path:
    """Write ``README.md`` (the model card) into ``folder``; returns its path."""
    path = Path(folder) / CARD_FILE
    path.write_text(render_card(card, settings, adapter=adapter, title=title))
    return path


def read_card(folder: str | Path) -> tuple[PolicyCard | None, str | None]:
    """The :class:`PolicyCard` in a folder's ``README.md`` metadata and the card's title; ``(None, None)`` without."""
    path = Path(folder) / CARD_FILE
    if not path.exists():
        return None, None
    text = path.read_text()
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    if not text.startswith("---"):
        return None, title
    from huggingface_hub import ModelCard

    block = ModelCard(text).data.to_dict().get("promptloop")
    return (PolicyCard.from_dict(block) if isinstance(block, dict) else None), title


def resolve_policy_path(path: str) -> str:
    """``path`` itself when it is a folder or a plain model's hub id; a local snapshot when it is a hub repo of a
    saved policy (one with ``promptloop_agent.json``), so that its settings, card and adapters load as a folder's."""
    if Path(path).is_dir() or path.count("/") != 1:
        return path
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        hf_hub_download(path, AGENT_FILE)
    except (EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled):
        return path  # a plain image-text-to-text model: transformers loads it
    return snapshot_download(path)
