"""A varied rewrite teacher for the toy world: the warm start's targets.

Each rewrite keeps every attribute the query names (checked with the world's own parser) and varies the
rest: wording of the position and background phrases, attributes the query leaves open, emphasis by
repetition, a filler word, clause order. The policy imitates this spread before GRPO, so RL starts from a
prompt writer that explores sensible alternatives rather than one that can only copy the query.
"""

from __future__ import annotations

import numpy as np

from promptloop_agents.policies.protocol import Observation

FILLERS = ("single", "solid", "bright", "plain")
COPY_PROBABILITY = 0.2


def _choice(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def toy_rewrite(query: str, rng: np.random.Generator) -> str:
    """A random sensible rewrite of a toy-world ``query`` (the query itself with probability 0.2).

    >>> from promptloop_env.toy.world import parse_query
    >>> rewrite = toy_rewrite("a red circle on the left", np.random.default_rng(3))
    >>> parse_query(rewrite)["colour"], parse_query(rewrite)["position"]
    ('red', 'left')
    """
    from promptloop_env.toy.world import BACKGROUND_PHRASES, POSITION_PHRASES, VALUES, is_visible, parse_query

    named = parse_query(query)
    if rng.random() < COPY_PROBABILITY:
        return query
    attrs = dict(named)
    for name in ("size", "position", "background"):  # fill in some attributes the query leaves open
        if name not in attrs and rng.random() < 0.3:
            value = _choice(rng, VALUES[name])
            if name != "background" or is_visible(attrs.get("colour", ""), value):
                attrs[name] = value
    words = [attrs[name] for name in ("size", "colour") if name in attrs]
    if "colour" in attrs and rng.random() < 0.2:
        words.insert(words.index(attrs["colour"]), attrs["colour"])  # emphasis: "red red"
    if rng.random() < 0.2:
        words.insert(0, _choice(rng, FILLERS))
    words.append(attrs.get("shape", "shape"))
    text = ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)
    position = " " + _choice(rng, POSITION_PHRASES[attrs["position"]]) if "position" in attrs else ""
    background = _choice(rng, BACKGROUND_PHRASES).format(attrs["background"]) if "background" in attrs else ""
    if background and rng.random() < 0.2:
        text = f"{_choice(rng, ('on a', 'against a'))} {attrs['background']} background, {text}{position}"
    else:
        text = f"{text}{position}{background}"
    if rng.random() < 0.15 and "colour" in attrs:
        text += f", {attrs['colour']} {attrs.get('shape', 'shape')}"
    found = parse_query(text)
    return text if all(found.get(k) == v for k, v in named.items()) else query


def toy_teacher(observation: Observation, rng: np.random.Generator) -> str:
    """The warm-start teacher: a fresh :func:`toy_rewrite` of the observation's query at every decision."""
    return toy_rewrite(str(observation["query"]), rng)
