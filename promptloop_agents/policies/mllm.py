"""The PromptLoop policy: a multimodal LLM that looks at the x0 preview and writes the next prompt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from gymnasium.error import DependencyNotInstalled
from PIL import Image

from promptloop_agents.policies.model_card import (
    AGENT_FILE,
    GenerationSettings,
    PolicyCard,
    read_card,
    resolve_policy_path,
    write_card,
)
from promptloop_agents.policies.processing import (
    DEFAULT_ANSWER_TAG,
    DEFAULT_STATE_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    load_processor,
    observation_to_messages,
    parse_prompt,
    preview_to_pil,
    save_processor,
    special_token_ids,
)

DEFAULT_POLICY = "Qwen/Qwen2.5-VL-3B-Instruct"
# LoRA on the language model's linear layers only; the vision tower stays frozen.
LANGUAGE_MODEL_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class PolicySample:
    """One batched policy decision: what the model saw, what it wrote, and the parsed prompts.

    ``texts`` and ``images`` are kept so that the training forward can rebuild exactly the same inputs.
    """

    texts: list[str]
    images: list[Image.Image] | None
    completions: list[torch.Tensor]
    prompts: list[str]
    malformed: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class ActionBatch:
    """Rows of one or more :class:`PolicySample` collated for a forward pass (see :meth:`MLLMAgent.collate`)."""

    inputs: dict[str, torch.Tensor]
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor


def pad_completions(completions: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D token tensors to ``[B, L]`` and return them with their 0/1 mask.

    >>> ids, mask = pad_completions([torch.tensor([5, 6]), torch.tensor([7])], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6], [7, 0]], [[1, 1], [1, 0]])
    """
    length = max(1, max(len(c) for c in completions))
    ids = torch.full((len(completions), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(completions), length), dtype=torch.long)
    for row, completion in enumerate(completions):
        ids[row, : len(completion)] = completion
        mask[row, : len(completion)] = 1
    return ids, mask


class MLLMAgent:
    """An image-text-to-text model (any transformers family with a processor and chat template) as a policy.

    At each decision the observation is rendered as a fresh chat (optional system prompt, then the preview and
    ``state_template`` filled with the query, the prompt in force and the progress); the model's answer is
    parsed with ``answer_tag`` and a malformed answer falls back to the prompt in force (``num_malformed``
    counts those, so a format penalty can be added). Sampling follows the model's full softmax at
    ``temperature`` (``top_k=0``, ``top_p=1`` unless set), structural special tokens are banned.

    Modes: ``"closed-loop"`` shows the preview at each refinement; ``"a-priori"`` shows no image, so every
    prompt depends only on the query, the previous prompt and the progress, and all of them can be planned
    before sampling starts (:meth:`plan`).

    Args:
        model: a transformers image-text-to-text model (optionally a peft model with LoRA adapters).
        processor: its processor; its tokenizer's padding side is set to left.
        mode: ``"closed-loop"`` or ``"a-priori"``.
        temperature, top_k, top_p, do_sample, max_new_tokens: generation settings.
        system_prompt: system message, or ``None`` for none.
        state_template: user text, formatted with ``query``, ``prompt``, ``timestep`` and ``segment``.
        answer_tag: the answer is read from ``<tag>...</tag>``; ``None`` reads the first line.
        image_size: previews are resized to this square size before the processor, when given.
        preview_size: the side of the previews the policy was trained on; larger previews are first shrunk to
            it (area average), so that a policy trained on 64-pixel previews sees 64 pixels in any env.
        preview_contrast: when given, each preview's deviation from its background is stretched to this RGB
            distance first (:func:`~.processing.stretch_contrast`; early x0 estimates are faint).
        base_name_or_path: where the base weights come from (hub id or folder), so that saving a LoRA policy
            need not copy them; ``None`` when the model was built in code.
        generation: the settings the policy was trained to act under (the pipeline's defaults), saved beside it.
        card: what its model card says (training and held-out results); saved as ``README.md``.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        mode: Literal["closed-loop", "a-priori"] = "closed-loop",
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        do_sample: bool = True,
        max_new_tokens: int = 77,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        state_template: str = DEFAULT_STATE_TEMPLATE,
        answer_tag: str | None = DEFAULT_ANSWER_TAG,
        image_size: int | None = None,
        preview_size: int | None = None,
        preview_contrast: float | None = None,
        base_name_or_path: str | None = None,
        generation: GenerationSettings | None = None,
        card: PolicyCard | None = None,
    ) -> None:
        if mode not in ("closed-loop", "a-priori"):
            raise ValueError(f"mode must be 'closed-loop' or 'a-priori'; got {mode!r}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature} (use do_sample=False for greedy).")
        self.model, self.processor = model, processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.mode, self.temperature, self.top_k, self.top_p = mode, temperature, top_k, top_p
        self.do_sample, self.max_new_tokens = do_sample, max_new_tokens
        self.system_prompt, self.state_template, self.answer_tag = system_prompt, state_template, answer_tag
        self.image_size, self.base_name_or_path = image_size, base_name_or_path
        self.preview_contrast, self.preview_size = preview_contrast, preview_size
        self.generation = generation or GenerationSettings()
        self.card = card or PolicyCard()
        self.card_title: str | None = None
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None) or self.tokenizer.eos_token_id
        self.eos_token_ids = [eos] if isinstance(eos, int) else list(eos)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]
        self.banned_token_ids = special_token_ids(self.tokenizer, keep=set(self.eos_token_ids))
        # Llama-style LMs take arange positions unless told; Qwen-VL computes its own (M-RoPE) from the mask.
        self.explicit_positions = "qwen" not in model.config.model_type
        self.num_actions = 0
        self.num_malformed = 0

    # -- settings and persistence ------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The JSON-able constructor settings (everything but the model and processor)."""
        keys = ("mode", "temperature", "top_k", "top_p", "do_sample", "max_new_tokens", "system_prompt")
        keys += ("state_template", "answer_tag", "image_size", "preview_size", "preview_contrast")
        keys += ("base_name_or_path",)
        return {key: getattr(self, key) for key in keys}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.model, "peft_config")

    def add_lora(
        self,
        r: int = 16,
        alpha: int = 32,
        dropout: float = 0.0,
        target_modules: str | list[str] | None = None,
        seed: int = 0,
    ) -> None:
        """Wrap the model with fresh LoRA adapters (language model linear layers by default, seeded init)."""
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as err:
            raise DependencyNotInstalled('LoRA needs peft: pip install "promptloop[agents]"') from err
        config = LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules or LANGUAGE_MODEL_LORA_TARGETS
        )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = get_peft_model(self.model, config)

    def save_pretrained(
        self,
        path: str | Path,
        copy_base: bool | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
        card: PolicyCard | None = None,
        generation: GenerationSettings | None = None,
    ) -> None:
        """Save the policy as a shareable folder; loadable by :meth:`from_pretrained` from the folder or the hub.

        Writes the adapters (or full weights), the processor, ``promptloop_agent.json`` (the constructor settings,
        ``image_size`` included), ``promptloop_generation.json`` (the settings it acts under, the pipeline's
        defaults) and ``README.md``, a model card with YAML metadata (base model, backbone and reward trained with,
        recipe, held-out results with their intervals).

        Args:
            path: the folder.
            copy_base: for a LoRA policy, also save the base weights in ``path/base`` so the folder is
                self-contained. Default: only when the base was built in code (no ``base_name_or_path``);
                otherwise the base is referenced by its hub id or folder.
            state_dict: the model's full weights when its parameters are sharded (``accelerator.get_state_dict``
                under FSDP or DeepSpeed ZeRO-3); by default the model's own.
            card: replaces :attr:`card` (a policy whose weights changed since it was loaded needs a new one).
            generation: replaces :attr:`generation`.
        """
        path = Path(path)
        self.card = card or self.card
        self.generation = generation or self.generation
        kwargs = {} if state_dict is None else {"state_dict": state_dict}
        path.mkdir(parents=True, exist_ok=True)
        settings = self.settings()
        if self.has_adapter:
            self.model.save_pretrained(path, **kwargs)
            if copy_base or (copy_base is None and self.base_name_or_path is None):
                base = self.model.get_base_model()
                state = {
                    key.replace(".base_layer.", "."): value
                    for key, value in base.state_dict().items()
                    if "lora_" not in key
                }
                base.save_pretrained(path / "base", state_dict=state)
                settings["base_name_or_path"] = "base"
        else:
            self.model.save_pretrained(path, **kwargs)
            settings["base_name_or_path"] = None
        settings["adapter"] = self.has_adapter
        save_processor(self.processor, path)
        (path / AGENT_FILE).write_text(json.dumps(settings, indent=2))
        self.generation.save(path)
        if self.card.base_model is None and self.base_name_or_path and self.base_name_or_path != "base":
            self.card.base_model = self.base_name_or_path
        write_card(path, self.card, self.generation, adapter=self.has_adapter, title=self.card_title)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload PromptLoop policy",
        copy_base: bool | None = None,
        card: PolicyCard | None = None,
        generation: GenerationSettings | None = None,
    ) -> Any:
        """Save the policy (as :meth:`save_pretrained`) into a temporary folder and upload it to the hub repo
        ``repo_id`` (created when missing) with ``huggingface_hub``; returns the upload's commit info."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, copy_base=copy_base, card=card, generation=generation)
            return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path = DEFAULT_POLICY,
        *,
        is_trainable: bool = False,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        **overrides: Any,
    ) -> MLLMAgent:
        """Load a policy saved by :meth:`save_pretrained` (a folder or a hub repo), or any image-text-to-text
        model folder / hub id (then with the default settings).

        Args:
            path: policy folder, policy hub repo, model folder or hub id (``Qwen/Qwen2.5-VL-3B-Instruct`` by
                default).
            is_trainable: keep LoRA adapters trainable.
            torch_dtype, device: where and how to load the weights.
            overrides: constructor settings that replace the saved ones (e.g. ``mode="a-priori"``).
        """
        from transformers import AutoModelForImageTextToText

        path = resolve_policy_path(str(path))
        agent_file = Path(path) / AGENT_FILE
        settings: dict[str, Any] = json.loads(agent_file.read_text()) if agent_file.exists() else {}
        adapter = settings.pop("adapter", False)
        base = settings.get("base_name_or_path") or path
        if adapter and (Path(path) / base).is_dir():
            base = str(Path(path) / base)
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch_dtype)
        if adapter:
            try:
                from peft import PeftModel
            except ImportError as err:
                raise DependencyNotInstalled('LoRA policies need peft: pip install "promptloop[agents]"') from err
            model = PeftModel.from_pretrained(model, path, is_trainable=is_trainable)
        model.eval()
        if device is not None:
            model.to(device)
        settings["base_name_or_path"] = base if adapter else path
        card, title = read_card(path) if Path(path).is_dir() else (None, None)
        settings.update(generation=GenerationSettings.load(path) if Path(path).is_dir() else None, card=card)
        settings.update(overrides)
        agent = cls(model, load_processor(path), **settings)
        agent.card_title = title
        return agent

    # -- acting ------------------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Start an episode; a seed seeds torch's global RNG, which ``generate`` samples from."""
        if seed is not None:
            torch.manual_seed(seed)

    def act(self, observation: dict[str, Any]) -> str:
        """Write the next prompt for one observation."""
        return self.act_batch([observation])[0]

    def act_batch(self, observations: list[dict[str, Any]]) -> list[str]:
        """Write the next prompts for several episodes in one batched generation."""
        return self.sample(observations).prompts

    def plan(self, query: str, timesteps: list[float]) -> list[str]:
        """A-priori mode: plan every prompt from the query alone, one per refinement point, before sampling."""
        prompts, prompt = [], query
        for segment, timestep in enumerate(timesteps):
            observation = {"query": query, "prompt": prompt, "timestep": timestep, "segment": segment}
            prompt = self.sample([observation], with_images=False).prompts[0]
            prompts.append(prompt)
        return prompts

    def render(
        self, observations: list[dict[str, Any]], with_images: bool | Sequence[bool]
    ) -> tuple[list[str], list[Image.Image] | None]:
        """Chat-formatted input texts, and the previews of the rows shown one (``None`` when no row is)."""
        flags = [with_images] * len(observations) if isinstance(with_images, bool) else list(with_images)
        texts = [
            self.processor.apply_chat_template(
                observation_to_messages(obs, self.state_template, self.system_prompt, flag),
                add_generation_prompt=True,
                tokenize=False,
            )
            for obs, flag in zip(observations, flags, strict=True)
        ]
        shown = [obs for obs, flag in zip(observations, flags, strict=True) if flag]
        images = [
            preview_to_pil(obs["image"], self.image_size, self.preview_contrast, self.preview_size) for obs in shown
        ]
        return texts, images or None

    def build_inputs(self, texts: list[str], images: list | None) -> dict[str, torch.Tensor]:
        """Tokenise (left-padded) and preprocess images, on the model's device."""
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        return {key: value.to(self.device) for key, value in inputs.items()}

    @torch.no_grad()
    def sample(
        self, observations: list[dict[str, Any]], model: Any | None = None, with_images: bool | None = None
    ) -> PolicySample:
        """Generate answers for a batch of observations and parse them into prompts.

        Args:
            observations: env observations (``image``, ``query``, ``prompt``, ``timestep``, ``segment``).
            model: the model to generate with (e.g. the unwrapped DDP model); ``self.model`` by default.
            with_images: show the previews; by default true in closed-loop mode and false in a-priori mode.
        """
        model = self.model if model is None else model
        with_images = self.mode == "closed-loop" if with_images is None else with_images
        texts, images = self.render(observations, with_images)
        inputs = self.build_inputs(texts, images)
        sampling = (
            {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p} if self.do_sample else {}
        )
        output = model.generate(
            **inputs,
            do_sample=self.do_sample,
            max_new_tokens=self.max_new_tokens,
            suppress_tokens=self.banned_token_ids or None,
            repetition_penalty=1.0,  # instruct checkpoints ship other defaults; the loss assumes the plain softmax
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_ids,
            **sampling,
        ).cpu()
        completions = [self._trim(row) for row in output[:, inputs["input_ids"].shape[1] :]]
        answers = self.tokenizer.batch_decode(
            [c[:-1] if len(c) and int(c[-1]) in self.eos_token_ids else c for c in completions],
            skip_special_tokens=True,
        )
        prompts, malformed = [], []
        for answer, obs in zip(answers, observations, strict=True):
            prompt = parse_prompt(answer, self.answer_tag)
            malformed.append(prompt is None)
            prompts.append(str(obs["prompt"]) if prompt is None else prompt)
        self.num_actions += len(prompts)
        self.num_malformed += sum(malformed)
        return PolicySample(texts, images, completions, prompts, malformed)

    def _trim(self, row: torch.Tensor) -> torch.Tensor:
        """Keep generated tokens up to and including the first end-of-answer token."""
        ends = torch.isin(row, torch.tensor(self.eos_token_ids)).nonzero()
        return row[: int(ends[0]) + 1] if len(ends) else row

    # -- training support --------------------------------------------------------------------------------

    def collate(self, rows: Sequence[tuple[PolicySample, int]]) -> ActionBatch:
        """Model inputs and padded completions of the given ``(sample, row)`` actions, on the model's device."""
        with_images = rows[0][0].images is not None  # a sample shows every row its preview, or none
        images = [sample.images[row] for sample, row in rows] if with_images else None
        inputs = self.build_inputs([sample.texts[row] for sample, row in rows], images)
        ids, mask = pad_completions([sample.completions[row] for sample, row in rows], self.pad_token_id)
        return ActionBatch(inputs, ids.to(self.device), mask.to(self.device))

    def logps(self, model: Any, batch: ActionBatch, with_entropy: bool = False) -> Any:
        """:meth:`completion_logps` of a collated batch (the :class:`TrainablePolicy` method)."""
        return self.completion_logps(model, batch.inputs, batch.completion_ids, batch.completion_mask, with_entropy)

    def completion_logps(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        completion_ids: torch.Tensor,
        completion_mask: torch.Tensor,
        with_entropy: bool = False,
    ) -> Any:
        """Per-token log-probabilities of the completions under ``model``'s sampling distribution.

        Uses the same inputs and the same distribution as :meth:`sample`: banned tokens masked, then
        ``temperature``, ``top_k`` and ``top_p`` applied in ``generate``'s order, so that an unchanged model
        gives exactly the old log-probabilities (importance ratio 1). Padding positions are 0.

        Returns:
            ``[B, L]`` log-probabilities, and with ``with_entropy`` also the ``[B, L]`` entropy (nats) of the
            distribution each token was drawn from (no gradient).
        """
        completion_ids = completion_ids.to(self.device)
        completion_mask = completion_mask.to(self.device)
        ids = torch.cat([inputs["input_ids"], completion_ids], dim=1)
        attention = torch.cat([inputs["attention_mask"], completion_mask], dim=1)
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        for key in ("mm_token_type_ids", "token_type_ids"):
            if key in extra:  # the completion holds text tokens only
                extra[key] = torch.cat([extra[key], torch.zeros_like(completion_ids)], dim=1)
        if self.explicit_positions:  # match generate() under left padding
            extra["position_ids"] = (attention.cumsum(-1) - 1).clamp(min=0)
        keep = completion_ids.shape[1] + 1
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=keep, use_cache=False, **extra)
        logits = self.sampling_logits(logits.logits[:, :-1].float())
        # Padding ids may be banned (-inf): gather an allowed id there and zero it, to keep NaNs out.
        safe_ids = completion_ids.masked_fill(completion_mask == 0, self.eos_token_ids[0])
        log_probs = torch.log_softmax(logits, dim=-1)
        logps = log_probs.gather(-1, safe_ids.unsqueeze(-1)).squeeze(-1) * completion_mask
        if not with_entropy:
            return logps
        with torch.no_grad():
            entropy = -(log_probs.exp() * log_probs.nan_to_num(neginf=0.0)).sum(-1) * completion_mask
        return logps, entropy

    def sampling_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``[..., V]`` logits turned into the ones ``generate`` samples from (banned tokens, temperature, top-k/p)."""
        if self.banned_token_ids:
            banned = torch.tensor(self.banned_token_ids, device=logits.device)
            logits = logits.index_fill(-1, banned, float("-inf"))
        if not self.do_sample:
            return logits
        logits = logits / self.temperature
        if self.top_k or self.top_p < 1.0:
            from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

            shape = logits.shape
            flat = logits.reshape(-1, shape[-1])
            if self.top_k:
                flat = TopKLogitsWarper(self.top_k)(None, flat)
            if self.top_p < 1.0:
                flat = TopPLogitsWarper(self.top_p)(None, flat)
            logits = flat.reshape(shape)
        return logits
