"""Text utilities: CLIP-style tokenizers built locally, with no files from anywhere."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def learn_bpe_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Byte-pair merges that turn each word into one ``word</w>`` symbol, deterministically.

    Plain BPE (most frequent pair first), with ties broken by the pair itself rather than by hash order, so
    every process builds the same vocabulary (the ``tokenizers`` trainer breaks ties by insertion order of a
    hash map, which differs between processes).

    >>> learn_bpe_merges(["ab"])
    [('a', 'b</w>')]
    """
    words_list = [w for w in words if w]
    sequences = [tuple(w[:-1]) + (w[-1] + "</w>",) for w in words_list]
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for s in sequences for pair in zip(s, s[1:]))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        sequences = [_merge(s, best) for s in sequences]


def build_clip_tokenizer(words: Iterable[str], model_max_length: int = 77):
    """A CLIP-style byte-level BPE tokenizer over ``words``, built in-process and identical in every process.

    Each word of ``words`` (lower-case ASCII) becomes one token; any other text falls back to single bytes,
    so every string tokenizes.

    Args:
        words: the vocabulary to learn (duplicates are fine).
        model_max_length: the text encoder's window; longer prompts are truncated by the pipelines.

    Returns:
        A ``transformers.CLIPTokenizer`` that round-trips through ``save_pretrained``/``from_pretrained``.

    >>> tok = build_clip_tokenizer(["red", "circle"], model_max_length=16)
    >>> tok.convert_ids_to_tokens(tok("red circle").input_ids)
    ['<|startoftext|>', 'red</w>', 'circle</w>', '<|endoftext|>']
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    corpus = sorted({w.lower() for w in words if w.strip()})
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 byte-level symbols, in a fixed order
    vocab: dict[str, int] = {}
    for token in alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(token, len(vocab))
    merges = learn_bpe_merges(corpus)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
