"""A small image-text-to-text policy for the toy world, built entirely in code (no download).

It is a Qwen2.5-VL model (the paper's family) with a few layers, a byte-level BPE tokenizer trained on the
world's words (every world word is one token, any other text still tokenises through bytes), the Qwen chat
tokens and a short chat template. It goes through exactly the same :class:`MLLMAgent` code path as
``Qwen/Qwen2.5-VL-3B-Instruct``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.processing import allow_missing_video_processor
from promptloop_env.toy.tokenizer import world_words as toy_world_words

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SHIPPED_TOY_POLICY = Path(__file__).parents[1] / "assets" / "toy-policy"
"""The warm-started toy policy shipped with the package (regenerate: see ``assets/toy-policy/README.md``)."""
SHIPPED_TOY_COMPOSE_POLICY = Path(__file__).parents[1] / "assets" / "toy-compose-policy"
"""The distilled toy-compose policy (the closed-loop learner's warm start; see its README)."""
SHIPPED_POLICIES = {"shipped": SHIPPED_TOY_POLICY, "toy-compose": SHIPPED_TOY_COMPOSE_POLICY}
"""Names of the shipped warm starts: ``shipped`` (toy-shapes) and ``toy-compose`` (the distilled oracle)."""
TOY_STATE_TEMPLATE = "query: {query}\nprompt: {prompt}\nprogress: {timestep:.1f}"
# Words of the policy's own state text, on top of the world's words.
STATE_WORDS = ("query", "prompt", "progress", ":", ",", ".", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")


@dataclass
class ToyPolicySize:
    """Width and depth of the toy policy's language and vision parts."""

    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    vision_hidden_size: int = 32
    vision_depth: int = 2


TOY_POLICY_SIZES = {
    "tiny": ToyPolicySize(hidden_size=32, num_layers=2, num_heads=2, vision_hidden_size=32, vision_depth=1),
    "small": ToyPolicySize(),
    # toy-compose: more to see (which objects, how many, where), so a wider vision tower
    "compose": ToyPolicySize(hidden_size=128, num_layers=3, num_heads=4, vision_hidden_size=64, vision_depth=2),
    # a wider and deeper vision tower, for the perception experiments (research/toy_compose/compose_perception.py)
    "compose-wide": ToyPolicySize(hidden_size=128, num_layers=3, num_heads=4, vision_hidden_size=96, vision_depth=4),
}


def world_words() -> list[str]:
    """The toy world's words: its diffusion tokenizer's word list."""
    return toy_world_words()


def build_policy_tokenizer(words: Iterable[str], vocab_size: int = 600):
    """A byte-level BPE tokenizer over ``words`` (each one a single token, with and without a leading space)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(words) | set(STATE_WORDS))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, 256 + len(SPECIAL_TOKENS) + 2 * len(words)),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # One word per sequence: a sentence corpus would learn only space-prefixed merges.
    bpe.train_from_iterator([w for w in words for _ in range(4)] + [" " + w for w in words for _ in range(4)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )


def build_toy_processor(tokenizer, image_size: int = 56):
    """A Qwen2.5-VL processor with a small image size (``image_size`` / 28 squared image tokens per preview)."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    allow_missing_video_processor()
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=CHAT_TEMPLATE
    )


def build_toy_model(tokenizer, size: ToyPolicySize, seed: int = 0):
    """A randomly initialised Qwen2.5-VL model sized ``size`` for ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    head_dim = size.hidden_size // size.num_heads
    half = head_dim // 2  # M-RoPE sections (temporal, height, width) must sum to head_dim / 2
    section = [max(1, half // 4), (half - max(1, half // 4)) // 2]
    section.append(half - sum(section))
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": size.hidden_size,
            "intermediate_size": 2 * size.hidden_size,
            "num_hidden_layers": size.num_layers,
            "num_attention_heads": size.num_heads,
            "num_key_value_heads": size.num_heads,
            "max_position_embeddings": 1024,
            "rope_scaling": {"type": "mrope", "mrope_section": section},
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": size.vision_depth,
            "hidden_size": size.vision_hidden_size,
            "intermediate_size": 2 * size.vision_hidden_size,
            "num_heads": 2,
            "out_hidden_size": size.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [size.vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model.eval()


def build_toy_policy(
    size: str | ToyPolicySize = "small",
    words: Iterable[str] | None = None,
    seed: int = 0,
    image_size: int = 56,
    max_new_tokens: int = 24,
    preview_contrast: float | None = None,
) -> MLLMAgent:
    """A randomly initialised toy policy (warm-start it with :func:`promptloop_agents.learners.sft.warm_start`).

    Args:
        size: ``"tiny"`` (tests), ``"small"`` (the demo) or a :class:`ToyPolicySize`.
        words: the vocabulary to make single tokens; the toy world's words by default.
        seed: weight initialisation seed.
        image_size: side of the preview shown to the policy.
        max_new_tokens: longest answer.
        preview_contrast: stretch each preview's contrast to this before showing it (see ``MLLMAgent``).
    """
    size = TOY_POLICY_SIZES[size] if isinstance(size, str) else size
    tokenizer = build_policy_tokenizer(world_words() if words is None else words)
    return MLLMAgent(
        build_toy_model(tokenizer, size, seed),
        build_toy_processor(tokenizer, image_size),
        system_prompt=None,
        state_template=TOY_STATE_TEMPLATE,
        answer_tag=None,
        image_size=image_size,
        max_new_tokens=max_new_tokens,
        preview_contrast=preview_contrast,
    )
