"""Built-in prompt sets (queries), by name."""

from __future__ import annotations

from collections.abc import Sequence

from promptloop_env.registry import lookup, resolve

SIMPLE_ANIMALS: tuple[str, ...] = tuple(
    f"a photo of a {animal}"
    for animal in (
        "cat dog horse monkey rabbit zebra spider bird sheep deer cow goat lion tiger bear raccoon fox wolf "
        "lizard beetle ant butterfly fish shark whale dolphin squirrel mouse rat snake turtle frog chicken "
        "duck goose bee pig turkey fly llama camel bat gorilla hedgehog kangaroo"
    ).split()
)
"""DDPO's ``simple_animals`` prompts: the fallback set of any backbone without a set of its own."""

PROMPT_SETS: dict[str, str] = {
    "simple-animals": "promptloop_env.prompts:SIMPLE_ANIMALS",
    "toy-train": "promptloop_env.toy.prompts:TOY_TRAIN_QUERIES",
    "toy-test": "promptloop_env.toy.prompts:TOY_TEST_QUERIES",
    "toy-user-train": "promptloop_env.toy.prompts:TOY_USER_TRAIN_QUERIES",
    "toy-user-test": "promptloop_env.toy.prompts:TOY_USER_TEST_QUERIES",
    "toy-compose-train": "promptloop_env.toy.compose_prompts:TOY_COMPOSE_TRAIN_QUERIES",
    "toy-compose-test": "promptloop_env.toy.compose_prompts:TOY_COMPOSE_TEST_QUERIES",
    "toy-compose-user-train": "promptloop_env.toy.compose_prompts:TOY_COMPOSE_USER_TRAIN_QUERIES",
    "toy-compose-user-test": "promptloop_env.toy.compose_prompts:TOY_COMPOSE_USER_TEST_QUERIES",
}


def resolve_prompts(prompts: Sequence[str] | str | None, default: str | None) -> tuple[str, ...]:
    """The env's queries: a list as given, a built-in set by name, or the backbone's default set.

    Backbones without a set of their own use ``simple-animals``.
    """
    if prompts is None:
        prompts = default or "simple-animals"
    if isinstance(prompts, str):
        return tuple(resolve(lookup(PROMPT_SETS, prompts, "prompt set")))
    queries = tuple(prompts)
    bad = [q for q in queries if not isinstance(q, str)]
    if bad:
        raise TypeError(f"prompts must be strings; got {type(bad[0]).__name__}: {bad[0]!r}.")
    if not queries:
        raise ValueError("prompts is empty: give at least one query, a set name, or None.")
    return queries
