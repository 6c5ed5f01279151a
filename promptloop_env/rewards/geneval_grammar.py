"""GenEval's prompt grammar, read back: a prompt without metadata becomes GenEval's metadata, or is refused.

GenEval writes its prompts from six templates (``djghosh13/geneval`` ``prompts/create_prompts.py``) over the 80
COCO classes (:data:`GENEVAL_CLASSES`) and ten colours; :func:`parse_prompt` reads those forms back (with or
without the ``a photo of`` opening, a final full stop, ``to the left of`` for ``left of``, ``-colored``):

=================  ============================================  ==========================================
tag                form                                          metadata
=================  ============================================  ==========================================
single_object      ``a photo of a dog``                          include dog x1
two_object         ``a photo of a dog and a cat``                include dog x1, cat x1
counting           ``a photo of three dogs`` (two to ten)        include dog x3, exclude dog x4
colors             ``a photo of a red car``                      include car x1 red
position           ``a photo of a dog left of a cat``            include cat x1, dog x1 left of entry 0
color_attr         ``a photo of a red car and a blue bench``     include car x1 red, bench x1 blue
=================  ============================================  ==========================================

>>> parse_prompt("a photo of three teddy bears").to_metadata()
{'tag': 'counting', 'include': [{'class': 'teddy bear', 'count': 3}], 'exclude': [{'class': 'teddy bear', 'count': 4}], 'prompt': 'a photo of three teddy bears'}
>>> parse_prompt("a photo of a wine glass to the left of a dog").include[1]
Requirement(label='wine glass', count=1, colour=None, relation='left of', target=0)
"""  # noqa: E501

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from promptloop_env.geneval_rules import COLOURS, Exclusion, Requirement, Spec

GENEVAL_CLASSES: tuple[str, ...] = tuple(
    "person|bicycle|car|motorcycle|airplane|bus|train|truck|boat|traffic light|fire hydrant|stop sign|parking meter|"
    "bench|bird|cat|dog|horse|sheep|cow|elephant|bear|zebra|giraffe|backpack|umbrella|handbag|tie|suitcase|frisbee|"
    "skis|snowboard|sports ball|kite|baseball bat|baseball glove|skateboard|surfboard|tennis racket|bottle|"
    "wine glass|cup|fork|knife|spoon|bowl|banana|apple|sandwich|orange|broccoli|carrot|hot dog|pizza|donut|cake|"
    "chair|couch|potted plant|bed|dining table|toilet|tv|laptop|computer mouse|tv remote|computer keyboard|"
    "cell phone|microwave|oven|toaster|sink|refrigerator|book|clock|vase|scissors|teddy bear|hair drier|toothbrush"
    "".split("|")
)
"""GenEval's 80 class names (``evaluation/object_names.txt``), in COCO's category order."""

NUMBERS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10,
}  # fmt: skip
_OPENINGS = ("a photo of ", "a picture of ", "an image of ", "a photograph of ")
_FORMS = (
    "'a photo of a dog', 'a photo of a dog and a cat', 'a photo of three dogs', 'a photo of a red car', "
    "'a photo of a dog left of a cat' (right of, above, below), 'a photo of a red car and a blue bench'"
)


def plural(name: str) -> str:
    """GenEval's plural: ``-es`` after a final ``s``, else ``-s`` (``bus`` -> ``buses``, ``skis`` -> ``skises``)."""
    return f"{name}es" if name.endswith("s") else f"{name}s"


@functools.lru_cache(maxsize=8)
def _patterns(classes: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    nouns = sorted({*classes, *map(plural, classes)}, key=len, reverse=True)
    noun = "|".join(map(re.escape, nouns))
    colour = "|".join(COLOURS)
    number = "|".join([*NUMBERS, r"\d+"])

    def phrase(p: str) -> str:
        return rf"(?P<{p}n>{number})\s+(?:(?P<{p}c>{colour})(?:-colou?red)?\s+)?(?P<{p}o>{noun})"

    relation = r"(?:is\s+|are\s+)?(?:(?:to|on)\s+the\s+)?(?P<rel>left of|right of|above|below)"
    return (
        re.compile(rf"{phrase('a')}"),
        re.compile(rf"{phrase('a')}\s+and\s+{phrase('b')}"),
        re.compile(rf"{phrase('a')}\s+{relation}\s+{phrase('b')}"),
    )


def _normalise(text: str) -> str:
    text = re.sub(r"\s+", " ", text.strip().lower()).rstrip(".").strip()
    for opening in _OPENINGS:
        if text.startswith(opening):
            return text[len(opening) :]
    return text


def _object(match: re.Match, p: str, classes: tuple[str, ...]) -> tuple[str, int, str | None] | None:
    word, noun, colour = match[f"{p}n"], match[f"{p}o"], match[f"{p}c"]
    count = int(word) if word.isdigit() else NUMBERS[word]
    if noun in classes and count == 1:
        return noun, 1, colour
    singular = next((c for c in classes if plural(c) == noun), None)
    if singular is not None and count > 1:
        return singular, count, colour
    return None  # "a dogs", "three dog": not GenEval's wording


def parse_prompt(text: str, classes: Sequence[str] = GENEVAL_CLASSES) -> Spec:
    """GenEval's metadata of ``text`` written in one of GenEval's six forms over ``classes`` (see the module doc).

    Raises:
        ValueError: ``text`` is not in GenEval's grammar over ``classes``; the message lists the forms.
    """
    classes = tuple(classes)
    body = _normalise(text)
    single, pair, position = _patterns(classes)
    spec = None
    if m := single.fullmatch(body):
        obj = _object(m, "a", classes)
        if obj and obj[1] > 1 and obj[2] is None:
            spec = Spec("counting", (Requirement(obj[0], obj[1]),), (Exclusion(obj[0], obj[1] + 1),), prompt=text)
        elif obj and obj[1] == 1:
            spec = Spec("colors" if obj[2] else "single_object", (Requirement(obj[0], 1, obj[2]),), prompt=text)
    elif m := pair.fullmatch(body):
        a, b = _object(m, "a", classes), _object(m, "b", classes)
        if a and b and a[1] == b[1] == 1:
            tag = "color_attr" if (a[2] or b[2]) else "two_object"
            spec = Spec(tag, (Requirement(a[0], 1, a[2]), Requirement(b[0], 1, b[2])), prompt=text)
    elif m := position.fullmatch(body):
        a, b = _object(m, "a", classes), _object(m, "b", classes)
        if a and b and a[1] == b[1] == 1:
            include = (Requirement(b[0], 1, b[2]), Requirement(a[0], 1, a[2], m["rel"], 0))
            spec = Spec("position", include, prompt=text)
    if spec is None:
        raise ValueError(
            f"geneval cannot read {text!r}: it is not in GenEval's grammar over the detector's {len(classes)} "
            f"classes. GenEval's forms: {_FORMS}. Give the prompt's metadata instead (a .jsonl prompt file with "
            '"prompt", "tag", "include" and optionally "exclude" fields, passed as prompts=...), or reword it.'
        )
    return spec
