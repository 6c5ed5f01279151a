"""Wrappers that fit ``PromptLoop-v0`` to learners that cannot take its ``Text`` spaces as they are.

* :class:`DiscretizePrompt`: a ``Discrete(K)`` action that picks a prompt from a bank, or a modifier
  appended to the query (stable-baselines3, CleanRL, TorchRL with a categorical policy).
* :class:`DropTextObservation`: the observation without its ``Text`` fields (libraries that take arrays only).
* :class:`FormatChatObservation`: the observation as chat messages plus the preview image (LLM trainers).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from promptloop_env.spaces import PROMPT_CHARSET

MODIFIER_TEMPLATE = "{query}, {modifier}"
"""How :class:`DiscretizePrompt` applies a modifier to the query (an empty modifier keeps the query)."""

TOY_AESTHETIC_PROMPTS: tuple[str, ...] = (
    "{query}",
    "a large white square, black background",
    "a large yellow circle, black background",
    "a small purple triangle, teal background",
    "a small blue circle, gray background",
    "a large green square, white background",
)
"""A prompt bank for :class:`DiscretizePrompt` on the toy world (``{query}`` is the episode's query): scenes the
toy model draws reliably, some large on a contrasting background (what ``toy-aesthetic`` likes), some small on a
dull one; the query alone, first, is in between. The SB3 example's actions and the TRL example's warm-start prompts.
"""


def _check_strings(name: str, values: Any) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of str; got {type(values).__name__}.")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one entry (each becomes one discrete action).")
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{name} must contain only str; got {type(bad[0]).__name__}: {bad[0]!r}.")
    return values


def _check_template(name: str, template: str, allowed: set[str]) -> None:
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as err:
        raise ValueError(
            f"{name} {template!r} is not a valid format string ({err}); write literal braces as {{{{ }}}}."
        ) from err
    unknown = fields - allowed
    if unknown:
        raise ValueError(f"{name} {template!r} uses unknown fields {sorted(unknown)}; available: {sorted(allowed)}.")


class DiscretizePrompt(gym.Wrapper):
    """Replace the ``Text`` action by ``Discrete(K)``: action ``k`` is the ``k``-th prompt of a bank.

    Give exactly one of ``prompts`` (complete prompts; ``{query}`` in one is replaced by the episode's query)
    or ``modifiers`` (each applied to the query as ``template.format(query=..., modifier=...)``; an empty
    modifier keeps the query unchanged, which makes "do nothing" one of the actions). The prompt sent to the
    env is in ``info["prompt"]``.

    >>> import gymnasium as gym
    >>> import promptloop_env
    >>> env = gym.make("PromptLoop-v0", backbone="tiny", num_inference_steps=4, num_refinements=2,
    ...                preview="latent_rgb", preview_size=32, reward="jpeg-incompressibility")
    >>> env = DiscretizePrompt(env, modifiers=["", "bright colours", "high contrast"])
    >>> env.action_space
    Discrete(3)
    >>> obs, info = env.reset(seed=0, options={"query": "a red circle"})
    >>> obs, reward, terminated, truncated, info = env.step(1)
    >>> info["prompt"]
    'a red circle, bright colours'

    Args:
        env: a PromptLoop env (or a wrapper of one) whose action is the prompt.
        prompts: the prompt bank.
        modifiers: the modifier bank.
        template: how a modifier is applied; fields ``{query}`` and ``{modifier}``.
    """

    def __init__(
        self,
        env: gym.Env,
        prompts: Sequence[str] | None = None,
        modifiers: Sequence[str] | None = None,
        template: str = MODIFIER_TEMPLATE,
    ) -> None:
        if (prompts is None) == (modifiers is None):
            raise ValueError(
                "Give exactly one of prompts=[...] (complete prompts) or modifiers=[...] (added to the query)."
            )
        if not isinstance(env.action_space, spaces.Text):
            raise TypeError(f"DiscretizePrompt needs an env whose action space is Text; got {env.action_space}.")
        super().__init__(env)
        if prompts is not None:
            self.bank = _check_strings("prompts", prompts)
            for prompt in self.bank:
                _check_template("prompt", prompt, {"query"})
            self.modifiers: list[str] | None = None
        else:
            self.modifiers = _check_strings("modifiers", modifiers)
            _check_template("template", template, {"query", "modifier"})
            self.bank = [template if m else "{query}" for m in self.modifiers]
        self.template = template
        self.action_space = spaces.Discrete(len(self.bank))
        self._query: str | None = None

    def prompt(self, action: int) -> str:
        """The prompt that ``action`` sends for the current episode's query."""
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}); got {action!r}.")
        if self._query is None:
            raise RuntimeError("Call reset() before step().")
        modifier = self.modifiers[int(action)] if self.modifiers is not None else ""
        return self.bank[int(action)].format(query=self._query, modifier=modifier)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._query = info["query"]
        return obs, info

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        return self.env.step(self.prompt(np.asarray(action).item()))


class DropTextObservation(gym.ObservationWrapper):
    """Remove the ``Text`` fields (``query``, ``prompt``) from the ``Dict`` observation.

    Array-only libraries (stable-baselines3's ``MultiInputPolicy``, for one) reject ``Text`` spaces; what is
    left is ``image``, ``segment`` and ``timestep``. The query is still in ``info``.

    >>> import gymnasium as gym
    >>> import promptloop_env
    >>> env = gym.make("PromptLoop-v0", backbone="tiny", num_inference_steps=4, num_refinements=2,
    ...                preview="latent_rgb", preview_size=32, reward="jpeg-incompressibility")
    >>> env = DropTextObservation(env)
    >>> sorted(env.observation_space.spaces)
    ['image', 'segment', 'timestep']

    Args:
        env: an env with a ``Dict`` observation space.
        keep: keys to keep; default: every key whose space is not ``Text``.
    """

    def __init__(self, env: gym.Env, keep: Sequence[str] | None = None) -> None:
        if not isinstance(env.observation_space, spaces.Dict):
            raise TypeError(f"DropTextObservation needs a Dict observation space; got {env.observation_space}.")
        available = env.observation_space.spaces
        if keep is None:
            keep = [key for key, space in available.items() if not isinstance(space, spaces.Text)]
        keep = _check_strings("keep", keep)
        missing = [key for key in keep if key not in available]
        if missing:
            raise ValueError(f"keep names keys {missing} that the observation lacks; available: {sorted(available)}.")
        text = [key for key in keep if isinstance(available[key], spaces.Text)]
        if text:
            raise ValueError(f"keep names Text fields {text}; DropTextObservation exists to remove them.")
        super().__init__(env)
        self.keep = keep
        self.observation_space = spaces.Dict({key: available[key] for key in keep})

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return {key: observation[key] for key in self.keep}


CHAT_SYSTEM_PROMPT = (
    "You rewrite the prompt of a text-to-image model while it draws. You see its current guess of the final "
    "image. Reply with the complete prompt to use from now on, and nothing else."
)
"""Default system message of :class:`FormatChatObservation`."""

CHAT_USER_TEMPLATE = (
    "User request: {query}\nPrompt now in force: {prompt}\nStep {segment} of {num_refinements} "
    "({percent}% of the denoising done).\nWrite the next prompt."
)
"""Default user message of :class:`FormatChatObservation`; fields: query, prompt, segment, num_refinements, percent."""

_CHAT_FIELDS = {"query", "prompt", "segment", "num_refinements", "percent"}
_CHAT_CHARSET = frozenset(PROMPT_CHARSET | {"\n"})


class FormatChatObservation(gym.ObservationWrapper):
    """Present the observation as chat messages for LLM trainers: ``{"messages": ..., "image": ...}``.

    ``messages`` is a tuple of ``{"role", "content"}`` dicts (a system message, then one user message built
    from the Markov state: query, prompt in force, progress), ready for a tokenizer's ``apply_chat_template``.
    ``image`` is the preview; a vision-language model gets it by putting an image block before the user text
    (:meth:`with_image_block` builds that form). The action stays the complete prompt (``str``).

    >>> import gymnasium as gym
    >>> import promptloop_env
    >>> env = gym.make("PromptLoop-v0", backbone="tiny", num_inference_steps=4, num_refinements=2,
    ...                preview="latent_rgb", preview_size=32, reward="jpeg-incompressibility")
    >>> env = FormatChatObservation(env)
    >>> obs, info = env.reset(seed=0, options={"query": "a red circle"})
    >>> [m["role"] for m in obs["messages"]], obs["image"].shape
    (['system', 'user'], (32, 32, 3))
    >>> print(obs["messages"][1]["content"])
    User request: a red circle
    Prompt now in force: a red circle
    Step 1 of 2 (0% of the denoising done).
    Write the next prompt.

    Args:
        env: a PromptLoop env (or wrapper) with ``image``, ``query``, ``prompt``, ``segment``, ``timestep``.
        system_prompt: the system message, or None for no system message.
        user_template: format string of the user message (fields listed in :data:`CHAT_USER_TEMPLATE`).
    """

    def __init__(
        self, env: gym.Env, system_prompt: str | None = CHAT_SYSTEM_PROMPT, user_template: str = CHAT_USER_TEMPLATE
    ) -> None:
        needed = {"image", "query", "prompt", "segment", "timestep"}
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or not needed <= set(space.spaces):
            raise TypeError(
                f"FormatChatObservation needs a PromptLoop observation with keys {sorted(needed)}; got {space}."
            )
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise TypeError(f"system_prompt must be a str or None; got {type(system_prompt).__name__}.")
        if not isinstance(user_template, str):
            raise TypeError(f"user_template must be a str; got {type(user_template).__name__}.")
        _check_template("user_template", user_template, _CHAT_FIELDS)
        super().__init__(env)
        self.system_prompt = system_prompt
        self.user_template = user_template
        self.num_refinements = space.spaces["segment"].n - 1
        text = spaces.Text(max_length=8192, min_length=0, charset=_CHAT_CHARSET)
        message = spaces.Dict({"role": text, "content": text})
        self.observation_space = spaces.Dict(
            {"messages": spaces.Sequence(message, stack=False), "image": space.spaces["image"]}
        )

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        user = self.user_template.format(
            query=observation["query"],
            prompt=observation["prompt"],
            segment=min(int(observation["segment"]) + 1, self.num_refinements),
            num_refinements=self.num_refinements,
            percent=round(100 * float(observation["timestep"][0])),
        )
        messages = [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]
        messages.append({"role": "user", "content": user})
        return {"messages": tuple(messages), "image": observation["image"]}

    @staticmethod
    def with_image_block(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages in the multimodal content-block form, an image block before the user's text.

        >>> FormatChatObservation.with_image_block([{"role": "user", "content": "hi"}])
        [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'hi'}]}]
        """
        out = []
        for message in messages:
            if message["role"] == "user":
                content = [{"type": "image"}, {"type": "text", "text": message["content"]}]
            else:
                content = [{"type": "text", "text": message["content"]}]
            out.append({"role": message["role"], "content": content})
        return out
