"""The spaces of ``PromptLoop-v0``: the prompt charset, the ``Text`` space of prompts and the observation space."""

from __future__ import annotations

import string
import unicodedata
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import create_shared_memory

PROMPT_CHARSET = frozenset(string.ascii_letters + string.digits + string.punctuation + " ")
"""Characters of the ``Text`` spaces: letters, digits, ASCII punctuation and the space (95 in all)."""

MAX_PROMPT_CHARS = 1000
"""``max_length`` of the ``Text`` spaces. Longer strings are still accepted as actions."""

# Typography that users paste, mapped to the charset's nearest characters (accents go by NFKD below).
_TYPOGRAPHY = str.maketrans(
    {"\u2014": "-", "\u2013": "-", "\u2212": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
     "\u2026": "...", "\u00a0": " ", "\t": " ", "\n": " ", "\r": " "}
)  # fmt: skip


def fit_text(text: str) -> str:
    """``text`` as it appears in the observation: inside the ``Text`` space of prompts and queries.

    Accents are dropped (``café`` -> ``cafe``), dashes, quotes, ellipses and white space become their ASCII
    forms, any other character outside :data:`PROMPT_CHARSET` becomes ``?``, and the text is cut at
    :data:`MAX_PROMPT_CHARS`. ``info`` keeps the full text; text already inside the space is returned as it is.

    >>> fit_text("a red circle \u2014 left, caf\u00e9")
    'a red circle - left, cafe'
    >>> len(fit_text("a" * 5000))
    1000
    """
    if len(text) <= MAX_PROMPT_CHARS and all(c in PROMPT_CHARSET for c in text):
        return text
    text = unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHY))
    text = "".join(c if c in PROMPT_CHARSET else "?" for c in text if not unicodedata.combining(c))
    return text[:MAX_PROMPT_CHARS]


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


def prompt_space() -> PromptText:
    """The action space, and the space of the ``query`` and ``prompt`` observations.

    >>> prompt_space().contains("a large, bright red circle: left side!")
    True
    """
    return PromptText(max_length=MAX_PROMPT_CHARS, min_length=0, charset=PROMPT_CHARSET)


def observation_space(preview_size: int, num_refinements: int) -> spaces.Dict:
    """The observation space: ``image``, ``query``, ``prompt``, ``segment`` and ``timestep``.

    >>> sorted(observation_space(32, 4).spaces)
    ['image', 'prompt', 'query', 'segment', 'timestep']
    """
    text = prompt_space()
    return spaces.Dict(
        {
            "image": spaces.Box(0, 255, (preview_size, preview_size, 3), np.uint8),
            "query": text,
            "prompt": text,
            "segment": spaces.Discrete(num_refinements + 1),
            "timestep": spaces.Box(0.0, 1.0, (1,), np.float32),
        }
    )
