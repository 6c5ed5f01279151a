"""A CLIP-style byte-level BPE tokenizer over the toy world's words, built locally (no download).

The BPE is trained with ``tokenizers`` on the world's words fed **one word per sequence**: fed sentences,
byte-level BPE learns only space-prefixed merges and splits "shape" into pieces. Every byte is also added with
CLIP's ``</w>`` end-of-word suffix, so any unknown word still encodes, as byte pieces. The result is wrapped
in transformers' ``CLIPTokenizer``, which pads to ``model_max_length`` like every CLIP tokenizer, so the
diffusers pipeline uses it unchanged.

>>> tok = build_tokenizer()
>>> tok.tokenize("a large red circle, teal background")
['a</w>', 'large</w>', 'red</w>', 'circle</w>', ',</w>', 'teal</w>', 'background</w>']
"""

from __future__ import annotations

import json

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


def build_tokenizer(max_length: int = MAX_LENGTH):
    """Train the BPE on :func:`world_words` and return it as a ``transformers.CLIPTokenizer``.

    Args:
        max_length: ``model_max_length``; must equal the text encoder's ``max_position_embeddings``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeated so every world word's merges clear min_frequency; one word per sequence (see module doc).
    bpe.train_from_iterator(world_words() * 50, trainer)
    vocab = bpe.get_vocab()
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]
    ]
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
