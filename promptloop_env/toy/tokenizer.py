"""A CLIP-style byte-level BPE tokenizer over the toy world's words, built locally (no download).

Every world word is one token; every byte is also in the vocabulary with CLIP's ``</w>`` end-of-word suffix,
so any unknown word still encodes, as byte pieces. It is a transformers ``CLIPTokenizer``, which pads to
``model_max_length`` like every CLIP tokenizer, so the diffusers pipeline uses it unchanged, and it is the same
in every process.

>>> tok = build_tokenizer()
>>> tok.tokenize("a large red circle, teal background")
['a</w>', 'large</w>', 'red</w>', 'circle</w>', ',</w>', 'teal</w>', 'background</w>']
"""

from __future__ import annotations

from promptloop_env.text import build_clip_tokenizer
from promptloop_env.toy.world import POSITION_PHRASES, VALUES

MAX_LENGTH = 32  # room for refined prompts; the longest caption is 13 tokens
# Words of the captions plus a few words policies write often, so that those stay single tokens too.
EXTRA_WORDS: tuple[str, ...] = (
    "a", "an", "the", "on", "at", "in", "to", "of", "and", "with", "against", "background", "shape", "object",
    "side", "corner", "middle", "centre", "grey", "big", "tiny", "bright", "dark", "light", "colored", "coloured",
    "solid", "plain", "flat", "image", "picture", "photo", "single", "one", "no", "not", "very", "upper", "lower",
    "round", "box", "pink", "cyan", "brown",
)  # fmt: skip


def world_words() -> list[str]:
    """Every word the world's captions use, plus :data:`EXTRA_WORDS`, without duplicates."""
    words: list[str] = [w for values in VALUES.values() for w in values]
    words += [w for phrases in POSITION_PHRASES.values() for p in phrases for w in p.split()]
    words += list(EXTRA_WORDS)
    return list(dict.fromkeys(words))


COMPOSE_WORDS: tuple[str, ...] = (
    "one", "two", "three", "four", "circles", "squares", "triangles", "above", "below", "left", "right", "of",
)  # fmt: skip
"""Words of the ``toy-compose`` captions that ``toy-shapes`` lacks (counts, plurals, relations)."""


def build_compose_tokenizer(max_length: int = MAX_LENGTH):
    """The ``toy-compose`` tokenizer: :func:`world_words` plus :data:`COMPOSE_WORDS`, each one token."""
    return build_clip_tokenizer(world_words() + list(COMPOSE_WORDS), model_max_length=max_length)


def build_tokenizer(max_length: int = MAX_LENGTH):
    """The CLIP tokenizer over :func:`world_words` (:func:`promptloop_env.text.build_clip_tokenizer`).

    Args:
        max_length: ``model_max_length``; must equal the text encoder's ``max_position_embeddings``.
    """
    return build_clip_tokenizer(world_words(), model_max_length=max_length)
