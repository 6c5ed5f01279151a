"""Baseline agents: identity, static (feed-forward) rewrite and random modifiers; the blank-preview control."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from promptloop_agents.policies.protocol import Agent, Observation, act_batch

DEFAULT_MODIFIERS = (
    "highly detailed",
    "sharp focus",
    "vivid colors",
    "high quality",
    "professional lighting",
    "4k",
    "intricate",
    "award winning",
)
DEFAULT_REWRITE_TEMPLATE = "{query}, highly detailed, sharp focus, high quality"


class IdentityAgent:
    """The prompt is always the user's query: plain sampling, the reference every method must beat.

    >>> IdentityAgent().act({"query": "a red circle", "prompt": "x"})
    'a red circle'
    """

    uses_previews = False  # evaluation runs it on an env that decodes no previews

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset."""

    def act(self, observation: Observation) -> str:
        return str(observation["query"])


class StaticRewriteAgent:
    """One feed-forward rewrite of the query, used for the whole trajectory (the Promptist / RePrompt setting).

    Args:
        rewriter: ``query -> prompt`` (e.g. an LLM call), or ``None`` to fill ``template``.
        template: format string with ``{query}``, used when no rewriter is given.

    >>> agent = StaticRewriteAgent(template="{query}, bright")
    >>> agent.act({"query": "a red circle", "segment": 0})
    'a red circle, bright'
    """

    uses_previews = False

    def __init__(self, rewriter: Callable[[str], str] | None = None, template: str = DEFAULT_REWRITE_TEMPLATE) -> None:
        if rewriter is None and "{query}" not in template:
            raise ValueError(f"template must contain '{{query}}'; got {template!r}.")
        self.rewriter, self.template = rewriter, template
        self._cache: dict[str, str] = {}

    def reset(self, seed: int | None = None) -> None:
        """The rewrite is a function of the query only: nothing to reset."""

    def rewrite(self, query: str) -> str:
        """The rewrite of ``query`` (computed once per query and cached)."""
        if query not in self._cache:
            self._cache[query] = self.rewriter(query) if self.rewriter else self.template.format(query=query)
        return self._cache[query]

    def act(self, observation: Observation) -> str:
        return self.rewrite(str(observation["query"]))


class RandomModifierAgent:
    """Appends a few modifiers drawn at random to the query at every decision (a sanity baseline).

    Args:
        modifiers: the pool to draw from.
        max_modifiers: at most this many per prompt (at least one).
        seed: default seed when ``reset`` gets none.

    >>> agent = RandomModifierAgent(modifiers=["bright"], max_modifiers=1)
    >>> agent.reset(seed=0)
    >>> agent.act({"query": "a red circle"})
    'a red circle, bright'
    """

    uses_previews = False

    def __init__(self, modifiers: Sequence[str] = DEFAULT_MODIFIERS, max_modifiers: int = 3, seed: int = 0) -> None:
        if not modifiers:
            raise ValueError("modifiers must not be empty.")
        if max_modifiers < 1:
            raise ValueError(f"max_modifiers must be >= 1; got {max_modifiers}.")
        self.modifiers, self.max_modifiers = list(modifiers), max_modifiers
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, observation: Observation) -> str:
        count = int(self.rng.integers(1, min(self.max_modifiers, len(self.modifiers)) + 1))
        chosen = self.rng.choice(len(self.modifiers), size=count, replace=False)
        return ", ".join([str(observation["query"])] + [self.modifiers[i] for i in sorted(chosen)])


BLANK_PREVIEW_VALUE = 128
"""Pixel value of :class:`BlankPreviews`' images: mid-grey, the middle of the pixel range."""


class BlankPreviews:
    """Wraps an agent so that every preview it sees is one constant image: the "feedback vs compute" control.

    The wrapped agent makes the same calls at the same refinement points of the same denoising run as the
    closed loop (and the env still decodes its previews), but the image carries no information about the
    sample, so any gain of the closed loop over this control comes from what the previews show, not from the
    extra policy calls. The blank image is mid-grey (``value=128``), the middle of the pixel range: it shows no
    object, as the first, washed-out x0 estimates do, so the policy gets an input like those it was trained on,
    only never one that says how the sample is going (in ``toy-compose`` it reads as an empty grey background:
    "nothing drawn yet"). Pass another ``value`` (e.g. a world's most common background) to test that choice.

    Args:
        agent: any :class:`~promptloop_agents.policies.protocol.Agent` (an ``act_batch`` is used when it has one).
        value: the constant pixel value (0-255) of every preview.

    >>> import numpy as np
    >>> class Seen:
    ...     def reset(self, seed=None): pass
    ...     def act(self, observation): return str(int(observation["image"].max()))
    >>> BlankPreviews(Seen()).act({"image": np.full((4, 4, 3), 255, np.uint8), "query": "q"})
    '128'
    """

    uses_previews = True  # the env decodes previews as for the closed loop: the same compute, no information

    def __init__(self, agent: Agent, value: int = BLANK_PREVIEW_VALUE) -> None:
        if not 0 <= int(value) <= 255:
            raise ValueError(f"value must be a pixel value in [0, 255]; got {value}.")
        self.agent, self.value = agent, int(value)

    def blank(self, observation: Observation) -> Observation:
        """The observation with its ``image`` replaced by the constant image of the same shape and dtype."""
        image = np.asarray(observation["image"])
        return {**observation, "image": np.full_like(image, self.value)}

    def reset(self, seed: int | None = None) -> None:
        self.agent.reset(seed=seed)

    def act(self, observation: Observation) -> str:
        return self.agent.act(self.blank(observation))

    def act_batch(self, observations: list[Observation]) -> list[str]:
        return act_batch(self.agent, [self.blank(o) for o in observations])
