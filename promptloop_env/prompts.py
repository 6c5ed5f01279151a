"""Built-in prompt sets (queries), by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from promptloop_env.registry import Registry

SIMPLE_ANIMALS: tuple[str, ...] = tuple(
    f"a photo of a {animal}"
    for animal in (
        "cat dog horse monkey rabbit zebra spider bird sheep deer cow goat lion tiger bear raccoon fox wolf "
        "lizard beetle ant butterfly fish shark whale dolphin squirrel mouse rat snake turtle frog chicken "
        "duck goose bee pig turkey fly llama camel bat gorilla hedgehog kangaroo"
    ).split()
)
"""DDPO's ``simple_animals`` prompts: the fallback set of any backbone without a set of its own."""

PROMPT_SETS: Registry[Sequence[str] | Callable[[], Sequence[str]]] = Registry("prompt set")
"""The named prompt sets: the queries, or a function without arguments that returns them (loaded on use).

The toy worlds register theirs (:mod:`promptloop_env.toy.prompts`, :mod:`promptloop_env.toy.compose_prompts`);
register your own with ``PROMPT_SETS.register("my-set", ["a query", ...])``."""
PROMPT_SETS.register("simple-animals", SIMPLE_ANIMALS)


def resolve_prompts(prompts: Sequence[str] | str | None, default: str | None) -> tuple[str, ...]:
    """The env's queries: a list as given, a built-in set by name, or the backbone's default set.

    Backbones without a set of their own use ``simple-animals``.
    """
    if prompts is None:
        prompts = default or "simple-animals"
    if isinstance(prompts, str):
        entry = PROMPT_SETS[prompts]
        return tuple(entry() if callable(entry) else entry)
    queries = tuple(prompts)
    bad = [q for q in queries if not isinstance(q, str)]
    if bad:
        raise TypeError(f"prompts must be strings; got {type(bad[0]).__name__}: {bad[0]!r}.")
    if not queries:
        raise ValueError("prompts is empty: give at least one query, a set name, or None.")
    return queries
