"""The ``policy`` section of a run: which policy to train or evaluate, its precision, and how it samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptloop_agents.configs import config_field


@dataclass
class PolicyConfig:
    """Which policy to train or evaluate, its precision, and how it samples."""

    _argument_group_name = "policy"

    policy: str = config_field(
        "toy", "'toy' (build the toy-world policy and warm-start it), a policy folder or a hub id."
    )
    policy_dtype: str | None = config_field(
        None, "Policy precision: bfloat16 | float16 | float32 (default: as saved)."
    )
    toy_size: str = config_field("small", "Toy policy size: tiny | small | compose (a wider vision tower).")
    warm_start_episodes: int = config_field(64, "Toy warm start: env episodes rolled out with the rewrite teacher.")
    warm_start_text_examples: int = config_field(4, "Toy warm start: preview-free examples per training query.")
    warm_start_steps: int = config_field(600, "Toy warm start: supervised steps (batch 32).")
    warm_start_lr: float = config_field(2e-3, "Toy warm start: learning rate.")
    warm_start_from: str = config_field(
        "",
        "Toy policy: start from this warm-started policy folder if it exists; 'shipped' (toy-shapes) and "
        "'toy-compose' (the distilled oracle) name the package's own.",
    )
    temperature: float | None = config_field(
        None,
        "Sampling temperature of the policy in training (and in evaluation with --do-sample); default: the "
        "policy's saved one (a new toy policy: 1.0).",
    )
    top_k: int = config_field(0, "Sample from the k most likely tokens only (0 = all); enters the training log-probs.")
    top_p: float = config_field(1.0, "Nucleus sampling mass (1 = all); enters the training log-probs.")
    max_new_tokens: int = config_field(24, "Longest answer the policy may write, in tokens.")
    image_size: int | None = config_field(
        None, "Resize previews to this square size before the processor (default: as is)."
    )
    mode: str = config_field("closed-loop", "closed-loop (preview at every refinement) | a-priori (no images).")
    do_sample: bool = config_field(
        False, "Evaluation: sample the policy's answers instead of taking its most likely prompt (greedy)."
    )

    def sampling(self) -> dict[str, Any]:
        """The :class:`~promptloop_agents.policies.mllm.MLLMAgent` settings this config fixes."""
        keys = ("temperature", "top_k", "top_p", "max_new_tokens", "mode")
        settings = {key: getattr(self, key) for key in keys if getattr(self, key) is not None}
        return {**settings, "image_size": self.image_size} if self.image_size else settings
