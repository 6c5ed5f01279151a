"""Text utilities: CLIP-style tokenizers built locally, with no files from anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterable


def build_clip_tokenizer(words: Iterable[str], model_max_length: int = 77, vocab_size: int = 1000):
    """A CLIP-style byte-level BPE tokenizer trained in-process on ``words``.

    Each word of ``words`` becomes (at most) one token; any other text falls back to byte pieces, so
    every string tokenizes. Training on single words rather than sentences matters: on sentences the
    byte-level pre-tokenizer learns only space-prefixed merges.

    Args:
        words: the vocabulary to learn (duplicates are fine).
        model_max_length: the text encoder's window; longer prompts are truncated by the pipelines.
        vocab_size: upper bound on learned merges + alphabet.

    Returns:
        A ``transformers.CLIPTokenizer`` that round-trips through ``save_pretrained``/``from_pretrained``.

    >>> tok = build_clip_tokenizer(["red", "circle"], model_max_length=16)
    >>> tok.convert_ids_to_tokens(tok("red circle").input_ids)
    ['<|startoftext|>', 'red</w>', 'circle</w>', '<|endoftext|>']
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    corpus = sorted({w.lower() for w in words if w.strip()})
    bpe = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus * 20, trainer)
    vocab = bpe.get_vocab()
    merges = [
        tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in json.loads(bpe.to_str())["model"]["merges"]
    ]
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
