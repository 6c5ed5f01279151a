"""``geneval`` / ``geneval-soft``: GenEval's compositional score of real images, on transformers models (no mmdet).

Each image is scored against its query's GenEval metadata: the query's own (the shipped ``geneval`` set, or any
``.jsonl`` prompt file loaded in this process, :func:`promptloop_env.prompts.metadata_for`), else the metadata
read from the query by GenEval's grammar (:func:`~promptloop_env.rewards.geneval_grammar.parse_prompt`); a query
in neither is refused with a clear error. A detector reads the objects (:mod:`.geneval_detectors`; Mask2Former
COCO instance segmentation by default), CLIP ViT-L/14 names their colours, and GenEval's rules
(:mod:`promptloop_env.geneval_rules`, the module ``toy-compose`` scores with) score them.

Score a folder of images without mmdet (``<folder>/<index>/samples/*.png`` as GenEval's generation script writes
them, or ``<folder>/<index>_*.png`` / ``<index>.png`` against the ``geneval`` set's prompt ``index``)::

    python -m promptloop_env.rewards.geneval IMAGE_FOLDER --out results.jsonl

It prints GenEval's summary (the mean of the six categories' accuracies) and writes one JSON line per image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from promptloop_env import geneval_rules
from promptloop_env.geneval_rules import Spec
from promptloop_env.rewards.base import REWARDS
from promptloop_env.rewards.geneval_grammar import GENEVAL_CLASSES, parse_prompt
from promptloop_env.rewards.model_base import ModelReward

if __name__ == "__main__":  # the command: run before this copy of the module registers a second "geneval"
    from promptloop_env.rewards.geneval_cli import main

    main()
    raise SystemExit(0)

DEFAULT_DETECTOR = "facebook/mask2former-swin-small-coco-instance"
"""Mask2Former Swin-S, COCO instance segmentation: the family and backbone size of GenEval's mmdet detector."""
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
"""CLIP ViT-L/14 (OpenAI), GenEval's colour classifier."""
_MODELS: dict[tuple, tuple[Any, Any]] = {}


@REWARDS.register("geneval")
class GenEval(ModelReward):
    """GenEval's score of each image against its query's metadata (strict: 1.0 when every constraint holds).

    After each call, :attr:`details` holds per image the query's ``tag``, each constraint's result
    (``constraints``), the ``strict`` and ``soft`` scores and the objects read (label, confidence, box, colour).

    Args:
        detector: hub id or local folder of a transformers detector (default: :data:`DEFAULT_DETECTOR`).
        clip: hub id or local folder of a transformers ``CLIPModel`` and processor (default: :data:`DEFAULT_CLIP`).
        detector_kind: ``auto`` (from the checkpoint's config), ``mask2former``, ``object-detection`` or
            ``zero-shot`` (OWLv2, Grounding DINO: asked for the classes each prompt names).
        soft: score the fraction of constraints that hold (``geneval-soft``) instead of GenEval's all-or-nothing.
        classes: extra class names the grammar may read in queries without metadata (for zero-shot detectors).
        detection_threshold, counting_threshold, max_objects, position_margin: GenEval's (0.3, 0.9, 16, 0.1).
        detector_size: Mask2Former's input size, shorter side (800: mmdetection's test scale, which GenEval
            uses; ``None``: the checkpoint processor's own, 384 x 384).
        use_safetensors: passed to ``from_pretrained`` (``True``: safetensors only).
        **kwargs: ``device``, ``torch_dtype``, ``local_files_only``, ``batch_size`` of
            :class:`~promptloop_env.rewards.model_base.ModelReward`; others are ignored.
    """

    def __init__(
        self,
        detector: str | os.PathLike | None = None,
        clip: str | os.PathLike | None = None,
        detector_kind: str = "auto",
        soft: bool = False,
        classes: Sequence[str] = (),
        detection_threshold: float = geneval_rules.DETECTION_THRESHOLD,
        counting_threshold: float = geneval_rules.COUNTING_THRESHOLD,
        max_objects: int = geneval_rules.MAX_OBJECTS,
        position_margin: float = geneval_rules.POSITION_MARGIN,
        detector_size: int | None = 800,
        use_safetensors: bool | None = True,
        **kwargs: Any,
    ) -> None:
        detector = os.fspath(detector if detector is not None else DEFAULT_DETECTOR)
        super().__init__(pretrained=detector, **kwargs)
        self.clip_path = os.fspath(clip if clip is not None else DEFAULT_CLIP)
        self.detector_kind = detector_kind
        self.soft = soft
        self.classes = tuple(dict.fromkeys([*GENEVAL_CLASSES, *classes]))
        for name, value in (("detection_threshold", detection_threshold), ("counting_threshold", counting_threshold)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}.")
        self.thresholds = (detection_threshold, counting_threshold)
        self.max_objects = max_objects
        self.position_margin = position_margin
        self.detector_size = detector_size
        self.use_safetensors = use_safetensors
        self.details: list[dict[str, Any]] = []

    def sources(self) -> dict[str, str]:
        return {"detector": self.pretrained, "clip": self.clip_path}

    def _load(self, local_files_only: bool) -> None:
        from promptloop_env.rewards.geneval_detectors import ColourClassifier, load_detector

        # One copy of the models per process and setting: {"geneval": 1.0, "geneval-soft": 0.0} loads them once.
        key = (self.pretrained, self.detector_kind, self.clip_path, str(self.device), self.torch_dtype,
               self.use_safetensors, min(self.thresholds), self.detector_size)  # fmt: skip
        if key not in _MODELS:
            args = (self.device, self.torch_dtype, local_files_only, self.use_safetensors)
            detector = load_detector(
                self.pretrained, self.detector_kind, *args, min(self.thresholds), self.detector_size
            )
            _MODELS[key] = (detector, ColourClassifier(self.clip_path, *args))
        self.detector, self.colours = _MODELS[key]

    def spec_for(self, query: str) -> Spec:
        """The GenEval metadata ``query`` is scored against: its own if loaded, else read by GenEval's grammar.

        Raises:
            ValueError: the query has no metadata and is not in GenEval's grammar.
        """
        from promptloop_env.prompts import load_data_set, metadata_for

        metadata = metadata_for(query)
        if metadata is None or "include" not in metadata:
            load_data_set("geneval")  # indexes GenEval's own metadata on first use
            metadata = metadata_for(query)
        if metadata is not None and "include" in metadata:
            return Spec.from_metadata({"prompt": query, **metadata})
        return parse_prompt(query, self.classes)

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        self.details = []
        for query in queries:  # refuse an unreadable query before any model runs
            self.spec_for(query)
        return super().__call__(images, queries)

    def _score(self, images: list[Image.Image], queries: list[str]) -> torch.Tensor:
        specs = [self.spec_for(q) for q in queries]
        found = self.detector.detect(images, [spec.labels for spec in specs])
        scores = []
        for image, query, spec, objects in zip(images, queries, specs, found, strict=True):
            detail = self.score_objects(image, spec, objects)
            self.details.append({"query": query, **detail})
            scores.append(detail["soft" if self.soft else "strict"])
        return torch.tensor(scores, dtype=torch.float64)

    def score_objects(self, image: Image.Image, spec: Spec, objects: Sequence[geneval_rules.ObjectRecord]) -> dict:
        """GenEval's verdict on detected ``objects`` of ``image``: filter, name the colours asked about, check.

        Returns:
            ``tag``, ``constraints`` (name -> bool), ``strict``, ``soft`` and ``objects`` (what was kept).
        """
        kept = geneval_rules.keep_detections(objects, spec.tag, *self.thresholds, self.max_objects)
        coloured = {r.label for r in spec.include if r.colour} | {e.label for e in spec.exclude if e.colour}
        to_name = [o for o in kept if o.label in coloured]
        names = dict(zip(map(id, to_name), self.colours.classify(image, to_name), strict=True))
        kept = [geneval_rules.ObjectRecord(o.label, o.box, o.score, names.get(id(o)), o.mask) for o in kept]
        results = geneval_rules.check(kept, spec, pick="confidence", margin=self.position_margin)
        return {
            "tag": spec.tag,
            "constraints": results,
            "strict": geneval_rules.strict_score(results, bool(kept)),
            "soft": geneval_rules.soft_score(results, bool(kept)),
            "objects": [
                {"label": o.label, "score": round(o.score, 4), "box": [round(v, 1) for v in o.box], "colour": o.colour}
                for o in kept
            ],
        }


@REWARDS.register("geneval-soft")
def geneval_soft(**kwargs: Any) -> GenEval:
    """``geneval-soft``: the fraction of the query's GenEval constraints that hold (see :class:`GenEval`)."""
    return GenEval(soft=True, **kwargs)
