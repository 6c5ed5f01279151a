"""Turning observations into chat inputs and model answers into prompts, and saving processors.

The policy's input at every decision is rebuilt from the observation alone (a Markov state: the x0
preview, the query, the prompt in force and the fraction of denoising done), never a growing chat.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_SYSTEM_PROMPT = (
    "You refine prompts for a text-to-image diffusion model while it samples. You see the model's current "
    "estimate of the final image, the user's query, the prompt in force and how much of the denoising is done. "
    "Write the next complete prompt so that the final image matches the query well. "
    "Answer with the prompt only, inside <prompt></prompt>."
)
DEFAULT_STATE_TEMPLATE = "Query: {query}\nCurrent prompt: {prompt}\nDenoising done: {timestep:.0%}"
DEFAULT_ANSWER_TAG = "prompt"

PROCESSOR_FILE = "promptloop_processor.json"


def observation_to_messages(
    observation: dict[str, Any],
    state_template: str = DEFAULT_STATE_TEMPLATE,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    with_image: bool = True,
) -> list[dict[str, Any]]:
    """Render one observation as a chat (system prompt, then one user turn with the preview and the state text).

    >>> obs = {"query": "a red circle", "prompt": "a red circle", "timestep": 0.25, "segment": 1}
    >>> observation_to_messages(obs, "q: {query} t: {timestep:.2f}", None, with_image=False)
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'q: a red circle t: 0.25'}]}]
    """
    text = state_template.format(
        query=observation["query"],
        prompt=observation["prompt"],
        timestep=scalar(observation["timestep"]),
        segment=int(observation["segment"]),
    )
    content: list[dict[str, Any]] = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": text})
    messages = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt else []
    return [*messages, {"role": "user", "content": content}]


def scalar(value: Any) -> float:
    """A float from a number or a one-element array (the env's ``timestep`` is ``Box(0, 1, (1,))``)."""
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def stretch_contrast(image: np.ndarray, target: float) -> np.ndarray:
    """Scale each pixel's deviation from the background (the border's median colour) so that the strongest
    deviation (99th percentile of the RGB distance) becomes ``target``; never lowers the contrast.

    Early x0 estimates are washed-out means in which objects are faint; stretched, they are visible.
    """
    from promptloop_env.toy.analyser import border_median

    pixels = np.asarray(image, dtype=np.float32)
    background = border_median(pixels)
    deviation = pixels - background
    strength = np.percentile(np.linalg.norm(deviation, axis=-1), 99)
    gain = max(1.0, target / max(float(strength), 1e-6))
    return np.clip(background + gain * deviation, 0, 255).astype(np.uint8)


def preview_to_pil(
    image: np.ndarray, size: int | None = None, contrast: float | None = None, trained_size: int | None = None
) -> Image.Image:
    """Convert a ``uint8 [H, W, 3]`` preview to PIL: shrunk to ``trained_size`` (area average) when it is larger,
    contrast-stretched to ``contrast`` (see :func:`stretch_contrast`) and resized to ``size`` x ``size`` when given.

    >>> preview_to_pil(np.zeros((256, 256, 3), np.uint8), size=112, trained_size=64).size
    (112, 112)
    """
    if trained_size is not None and max(image.shape[:2]) > trained_size:
        # The policy learnt on previews of this side: show it the same resolution whatever the env's preview_size.
        image = np.asarray(
            Image.fromarray(np.asarray(image, np.uint8)).resize((trained_size, trained_size), Image.BOX)
        )
    image = stretch_contrast(image, contrast) if contrast else image
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if size is not None and pil.size != (size, size):
        pil = pil.resize((size, size), Image.BILINEAR)
    return pil


def parse_prompt(answer: str, tag: str | None = DEFAULT_ANSWER_TAG) -> str | None:
    """Extract the prompt from a model answer; ``None`` when the answer is malformed.

    With ``tag``, the text inside ``<tag>...</tag>`` is used (a missing closing tag is tolerated, a missing
    opening tag is not). Without a tag, the first line is used. Non-printable characters are dropped, and an
    answer without any letter or digit is malformed.

    >>> parse_prompt("Sure! <prompt>a red circle, left</prompt>")
    'a red circle, left'
    >>> parse_prompt("a red circle\\nmore", tag=None)
    'a red circle'
    >>> parse_prompt("no tags here") is None
    True
    """
    if tag:
        match = re.search(rf"<{re.escape(tag)}>(.*?)(?:</{re.escape(tag)}>|$)", answer, flags=re.DOTALL)
        if match is None:
            return None
        answer = match.group(1)
    lines = [line.strip() for line in answer.strip().splitlines()]
    text = "".join(ch for ch in (lines[0] if lines else "") if ch.isprintable()).strip().strip("\"'").strip()
    return text if any(ch.isalnum() for ch in text) else None


def special_token_ids(tokenizer: Any, keep: set[int]) -> list[int]:
    """Ids of all special / structural tokens except ``keep`` (the end-of-answer tokens).

    These are banned in generation *and* masked to -inf in the training forward, so that a sampled
    ``<|image_pad|>`` cannot break the next forward and both use the same distribution.
    """
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    return sorted(i for i in ids - keep if i < len(tokenizer))


def allow_missing_video_processor() -> None:
    """Let Qwen-VL processors be built with ``video_processor=None`` (their video processor needs torchvision).

    transformers checks every processor attribute's class at construction; this patch skips that check for a
    ``None`` video processor only. Idempotent.
    """
    from transformers.processing_utils import ProcessorMixin

    original = ProcessorMixin.check_argument_for_proper_class
    if getattr(original, "_promptloop_patched", False):
        return

    def check(self: Any, argument_name: str, argument: Any) -> Any:
        if argument_name == "video_processor" and argument is None:
            return None
        return original(self, argument_name, argument)

    check._promptloop_patched = True  # type: ignore[attr-defined]
    ProcessorMixin.check_argument_for_proper_class = check


def save_processor(processor: Any, path: str | Path) -> None:
    """Save a processor so that :func:`load_processor` can rebuild it offline (also without torchvision)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if getattr(processor, "video_processor", "absent") is not None:
        processor.save_pretrained(path)
        return
    # A processor without its video processor cannot go through save_pretrained: save its parts.
    processor.tokenizer.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    spec = {
        "processor_class": type(processor).__name__,
        "image_processor_class": type(processor.image_processor).__name__,
        "chat_template": processor.chat_template,
    }
    (path / PROCESSOR_FILE).write_text(json.dumps(spec, indent=2))


def load_processor(path: str | Path) -> Any:
    """Load a processor saved by :func:`save_processor`, or any ``AutoProcessor`` folder / hub id."""
    import transformers

    spec_file = Path(path) / PROCESSOR_FILE
    if spec_file.exists():
        spec = json.loads(spec_file.read_text())
    else:
        try:
            return transformers.AutoProcessor.from_pretrained(path)
        except ImportError:  # Qwen-VL video processors need torchvision: rebuild without one below
            from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

            model_type = transformers.AutoConfig.from_pretrained(path).model_type
            spec = {"processor_class": PROCESSOR_MAPPING_NAMES[model_type], "image_processor_class": None}
    allow_missing_video_processor()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if spec["image_processor_class"]:
        image_processor = getattr(transformers, spec["image_processor_class"]).from_pretrained(path)
    else:
        image_processor = transformers.AutoImageProcessor.from_pretrained(path)
    return getattr(transformers, spec["processor_class"])(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=spec.get("chat_template") or getattr(tokenizer, "chat_template", None),
    )
