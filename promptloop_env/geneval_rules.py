"""GenEval's rules, once: what a prompt's metadata requires and whether the objects read from an image give it.

One module scores both worlds: the ``toy-compose`` rewards feed it the exact analyser's objects
(:mod:`promptloop_env.toy.compose_analyser`), the ``geneval`` reward a transformers detector's
(:mod:`promptloop_env.rewards.geneval`). Both produce :class:`ObjectRecord` lists; a :class:`Spec` (GenEval's
metadata: ``tag``, ``include``, ``exclude``) lists what the prompt asks for; :func:`check` says which of its
:func:`constraints` hold. GenEval's official scorer (``djghosh13/geneval``, ``evaluation/evaluate_images.py``) is
reproduced as follows:

- detections below :data:`DETECTION_THRESHOLD` (0.3) are dropped, below :data:`COUNTING_THRESHOLD` (0.9) in a
  ``counting`` prompt; at most :data:`MAX_OBJECTS` (16) per class, most confident first (:func:`keep_detections`);
- an ``include`` entry ``{class, count}`` needs at least ``count`` objects of the class; with ``color``, its
  ``count`` most confident objects must all have that colour; an ``exclude`` entry ``{class, count}`` fails when
  ``count`` or more are found, so ``include`` 3 with ``exclude`` 4 is "exactly three";
- ``position: [relation, i]``: every pair of the entry's ``count`` most confident objects and entry ``i``'s must
  stand in the relation, judged on box centres after a margin of :data:`POSITION_MARGIN` (0.1) of the two boxes'
  sizes, per axis (:func:`relation`); it is checked only when both entries are otherwise met.

Which objects a check looks at is the only choice that depends on the reader (``pick``): ``"confidence"``
(GenEval: the ``count`` most confident of the class) for detectors, ``"any"`` for an exact reader without
confidences (the toy analyser: a group is met when any ``count`` of its objects meet it). The strict score is
GenEval's (1.0 when every constraint holds); the soft score is the fraction that hold.

>>> spec = Spec.from_metadata({"tag": "position", "include": [{"class": "dog", "count": 1},
...     {"class": "cat", "count": 1, "position": ["left of", 0]}], "prompt": "a photo of a cat left of a dog"})
>>> objects = [ObjectRecord("cat", (0, 0, 10, 10), 0.8), ObjectRecord("dog", (40, 0, 50, 10), 0.95)]
>>> check(objects, spec)
{'dog': True, 'cat': True, 'cat left of dog': True}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DETECTION_THRESHOLD = 0.3
"""GenEval's confidence threshold for an object to count as detected."""
COUNTING_THRESHOLD = 0.9
"""GenEval's confidence threshold in ``counting`` prompts (a spurious extra object would break the count)."""
POSITION_MARGIN = 0.1
"""GenEval's relation margin: centres must differ by more than this fraction of the two boxes' sizes."""
MAX_OBJECTS = 16
"""GenEval keeps at most this many objects per class, most confident first."""
COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
"""GenEval's ten colour names, in its order."""
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
"""GenEval's relations (image y grows downwards)."""
TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
"""GenEval's six categories."""
PICKS = ("confidence", "any")


@dataclass(frozen=True)
class ObjectRecord:
    """One object read from an image: class label, box ``(x0, y0, x1, y1)`` in pixels, confidence, colour.

    ``mask`` (a boolean ``H x W`` array, for colour classification) is not part of equality.
    """

    label: str
    box: tuple[float, float, float, float]
    score: float = 1.0
    colour: str | None = None
    mask: Any = field(default=None, compare=False, repr=False)

    @property
    def centre(self) -> np.ndarray:
        """``(cx, cy)``: the box centre."""
        x0, y0, x1, y1 = self.box
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2], dtype=float)

    @property
    def dims(self) -> np.ndarray:
        """``(width, height)`` of the box."""
        x0, y0, x1, y1 = self.box
        return np.abs(np.array([x1 - x0, y1 - y0], dtype=float))


def relation(a: ObjectRecord, b: ObjectRecord, margin: float = POSITION_MARGIN) -> set[str]:
    """GenEval's relations of ``a`` to ``b``: centre offset less a margin of ``margin`` of both sizes, per axis.

    A relation holds when the revised offset points within 60 degrees of its axis.

    >>> relation(ObjectRecord("a", (5, 25, 15, 35)), ObjectRecord("b", (45, 27, 55, 37)))
    {'left of'}
    """
    offset = a.centre - b.centre
    revised = np.maximum(np.abs(offset) - margin * (a.dims + b.dims), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    out = set()
    if dx < -0.5:
        out.add("left of")
    if dx > 0.5:
        out.add("right of")
    if dy < -0.5:
        out.add("above")
    if dy > 0.5:
        out.add("below")
    return out


@dataclass(frozen=True)
class Requirement:
    """One ``include`` entry: ``count`` objects of ``label`` (in ``colour``), optionally in ``relation`` to entry
    ``target`` (an index into the spec's ``include``)."""

    label: str
    count: int = 1
    colour: str | None = None
    relation: str | None = None
    target: int | None = None


@dataclass(frozen=True)
class Exclusion:
    """One ``exclude`` entry: fewer than ``count`` objects of ``label`` (of ``colour``, if given)."""

    label: str
    count: int
    colour: str | None = None


@dataclass(frozen=True)
class Spec:
    """What a prompt asks for, in GenEval's metadata form, plus the toy world's optional background."""

    tag: str
    include: tuple[Requirement, ...]
    exclude: tuple[Exclusion, ...] = ()
    background: str | None = None
    prompt: str = ""

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Spec:
        """Read GenEval's metadata dict (``tag``, ``include``, optional ``exclude`` and ``prompt``).

        Raises:
            ValueError: a missing or malformed field (the message names it).
        """
        try:
            include = tuple(
                Requirement(
                    str(r["class"]),
                    int(r.get("count", 1)),
                    r.get("color"),
                    *((str(r["position"][0]), int(r["position"][1])) if r.get("position") else (None, None)),
                )
                for r in metadata["include"]
            )
            exclude = tuple(
                Exclusion(str(r["class"]), int(r["count"]), r.get("color")) for r in metadata.get("exclude", ())
            )
            spec = cls(str(metadata["tag"]), include, exclude, metadata.get("background"), metadata.get("prompt", ""))
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ValueError(f"Malformed GenEval metadata ({type(err).__name__}: {err}): {dict(metadata)!r}") from err
        for r in spec.include:
            if r.relation is not None and (r.relation not in RELATIONS or not 0 <= r.target < len(include)):
                raise ValueError(f"Bad position {[r.relation, r.target]!r} in GenEval metadata: {dict(metadata)!r}")
            if r.colour is not None and r.colour not in COLOURS:
                raise ValueError(f"Unknown colour {r.colour!r} (GenEval's are {', '.join(COLOURS)}).")
        return spec

    def to_metadata(self) -> dict[str, Any]:
        """GenEval's metadata dict of this spec (the inverse of :meth:`from_metadata`)."""
        include = []
        for r in self.include:
            entry: dict[str, Any] = {"class": r.label, "count": r.count}
            if r.colour:
                entry["color"] = r.colour
            if r.relation:
                entry["position"] = [r.relation, r.target]
            include.append(entry)
        out: dict[str, Any] = {"tag": self.tag, "include": include}
        if self.exclude:
            out["exclude"] = [{"class": e.label, "count": e.count, **({"color": e.colour} if e.colour else {})}
                              for e in self.exclude]  # fmt: skip
        if self.background:
            out["background"] = self.background
        if self.prompt:
            out["prompt"] = self.prompt
        return out

    @property
    def labels(self) -> set[str]:
        """Every class the spec names."""
        return {r.label for r in self.include} | {e.label for e in self.exclude}


def keep_detections(
    objects: Sequence[ObjectRecord],
    tag: str,
    threshold: float = DETECTION_THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
) -> list[ObjectRecord]:
    """GenEval's detection filter: confidence above the threshold of ``tag``, at most ``max_objects`` per class,
    most confident first (no overlap suppression, as GenEval's default)."""
    cut = counting_threshold if tag == "counting" else threshold
    by_label: dict[str, list[ObjectRecord]] = {}
    for o in sorted(objects, key=lambda o: -o.score):
        if o.score > cut and len(by_label.setdefault(o.label, [])) < max_objects:
            by_label[o.label].append(o)
    return [o for group in by_label.values() for o in group]


@dataclass(frozen=True)
class Constraint:
    """One requirement of a spec: a short name, its kind and what it is about.

    Kinds: ``count`` (at least ``count`` of the class), ``exact`` (exactly ``count`` of the class, of the colour
    if given: an ``include`` with its ``exclude`` of ``count + 1``), ``colour`` (the picked objects have the
    colour), ``absent`` (an ``exclude`` on its own), ``relation`` (``requirement`` in ``relation`` to
    ``target``), ``background``.
    """

    name: str
    kind: str
    requirement: int | None = None
    exclusion: int | None = None


def _group_name(r: Requirement | Exclusion, with_colour: bool = True) -> str:
    words = [str(r.count)] if r.count > 1 else []
    if with_colour and r.colour:
        words.append(r.colour)
    return " ".join(words + [r.label])


def _paired_exclusion(spec: Spec, r: Requirement) -> int | None:
    for j, e in enumerate(spec.exclude):
        if e.label == r.label and e.count == r.count + 1 and e.colour == r.colour:
            return j
    return None


def constraints(spec: Spec) -> list[Constraint]:
    """What ``spec`` requires, in order: each ``include`` entry's count (and colour), each unpaired ``exclude``,
    each relation, the background."""
    out: list[Constraint] = []
    paired: set[int] = set()
    for i, r in enumerate(spec.include):
        j = _paired_exclusion(spec, r)
        if j is not None:
            paired.add(j)
            out.append(Constraint(_group_name(r), "exact", i, j))
            continue
        out.append(Constraint(_group_name(r, with_colour=False), "count", i))
        if r.colour:
            out.append(Constraint(_group_name(r), "colour", i))
    for j, e in enumerate(spec.exclude):
        if j not in paired:
            out.append(Constraint(f"fewer than {_group_name(e)}", "absent", None, j))
    for i, r in enumerate(spec.include):
        if r.relation is not None:
            target = spec.include[r.target]
            out.append(Constraint(f"{_group_name(r)} {r.relation} {_group_name(target)}", "relation", i))
    if spec.background:
        out.append(Constraint(f"{spec.background} background", "background"))
    return out


class _Reader:
    """The objects of one image, indexed by class, read under one ``pick`` rule."""

    def __init__(self, objects: Sequence[ObjectRecord], spec: Spec, pick: str, margin: float) -> None:
        if pick not in PICKS:
            raise ValueError(f"pick must be one of {PICKS}; got {pick!r}.")
        self.objects, self.spec, self.pick, self.margin = list(objects), spec, pick, margin
        self._matched: dict[int, bool] = {}

    def of(self, label: str, colour: str | None = None) -> list[ObjectRecord]:
        """Objects of ``label`` (and ``colour``), most confident first (stable for ties)."""
        found = [o for o in self.objects if o.label == label and colour in (None, o.colour)]
        return sorted(found, key=lambda o: -o.score)

    def picked(self, r: Requirement) -> list[ObjectRecord]:
        """GenEval's ``found_objects``: the ``count`` most confident objects of the class."""
        return self.of(r.label)[: r.count]

    def count_ok(self, r: Requirement) -> bool:
        return len(self.of(r.label)) >= r.count

    def colour_ok(self, r: Requirement) -> bool:
        if self.pick == "any":
            return len(self.of(r.label, r.colour)) >= r.count
        picked = self.picked(r)
        return len(picked) >= r.count and all(o.colour == r.colour for o in picked)

    def relation_ok(self, i: int) -> bool:
        r = self.spec.include[i]
        target = self.spec.include[r.target]
        if self.pick == "any":  # some object of the group stands in the relation to some object of the target's
            return any(
                r.relation in relation(a, b, self.margin)
                for a in self.of(r.label, r.colour)
                for b in self.of(target.label, target.colour)
                if a is not b
            )
        if not (self._own_ok(i) and self.matched(r.target)):
            return False
        pairs = [(a, b) for a in self.picked(r) for b in self.picked(target) if a is not b]
        return bool(pairs) and all(r.relation in relation(a, b, self.margin) for a, b in pairs)

    def _own_ok(self, i: int) -> bool:
        r = self.spec.include[i]
        j = _paired_exclusion(self.spec, r)
        if j is not None:
            return self.exact_ok(r, self.spec.exclude[j])
        return self.count_ok(r) and (r.colour is None or self.colour_ok(r))

    def matched(self, i: int) -> bool:
        """GenEval's ``matched``: entry ``i``'s count, colour and relation all hold."""
        if i not in self._matched:
            self._matched[i] = False  # a cycle of relations never matches
            r = self.spec.include[i]
            self._matched[i] = self._own_ok(i) and (r.relation is None or self.relation_ok(i))
        return self._matched[i]

    def exact_ok(self, r: Requirement, e: Exclusion) -> bool:
        return r.count <= len(self.of(r.label, r.colour)) < e.count

    def holds(self, c: Constraint, background: str | None) -> bool:
        r = self.spec.include[c.requirement] if c.requirement is not None else None
        if c.kind == "count":
            return self.count_ok(r)
        if c.kind == "colour":
            return self.colour_ok(r)
        if c.kind == "exact":
            return self.exact_ok(r, self.spec.exclude[c.exclusion])
        if c.kind == "absent":
            e = self.spec.exclude[c.exclusion]
            return len(self.of(e.label, e.colour)) < e.count
        if c.kind == "relation":
            return self.relation_ok(c.requirement)
        if c.kind == "background":
            return background == self.spec.background
        raise ValueError(f"Unknown constraint kind {c.kind!r}.")


def check(
    objects: Sequence[ObjectRecord],
    spec: Spec,
    pick: str = "confidence",
    background: str | None = None,
    margin: float = POSITION_MARGIN,
) -> dict[str, bool]:
    """Each constraint's name and whether ``objects`` satisfy it (a name listed twice is one entry).

    Args:
        objects: what was read from the image (already filtered by :func:`keep_detections` for a detector).
        spec: what the prompt asks for.
        pick: ``"confidence"`` (GenEval: colour and position judged on the most confident objects) or ``"any"``
            (an exact reader: any objects of the group may meet them).
        background: the image's background, for specs that name one.
        margin: the relation margin.
    """
    reader = _Reader(objects, spec, pick, margin)
    return {c.name: bool(reader.holds(c, background)) for c in constraints(spec)}


def soft_score(results: Mapping[str, bool], found_any: bool) -> float:
    """The fraction of constraints that hold; with none, 1.0 when any object was found (else 0.0)."""
    if not results:
        return float(found_any)
    return sum(results.values()) / len(results)


def strict_score(results: Mapping[str, bool], found_any: bool) -> float:
    """GenEval's rule: 1.0 when every constraint holds (and, with none, when any object was found), else 0.0."""
    return float(soft_score(results, found_any) == 1.0)
