"""The ``geneval`` reward's readers of real images: transformers detectors and CLIP colour classification.

Every detector turns PIL images into :class:`~promptloop_env.geneval_rules.ObjectRecord` lists (label, box,
confidence, and for Mask2Former the mask), labels in GenEval's class names:

- :class:`Mask2FormerDetector` (the default; GenEval uses mmdetection's Mask2Former Swin-S on COCO): instance
  scores and masks post-processed as mmdetection does (the top ``num_queries`` (query, class) pairs, class
  probability times the mask's mean foreground probability, masks upsampled to the image, boxes from masks);
- :class:`BoxDetector`: any transformers ``AutoModelForObjectDetection`` (DETR, RT-DETR, ...), boxes only;
- :class:`ZeroShotDetector`: ``AutoModelForZeroShotObjectDetection`` (OWLv2, OWL-ViT, Grounding DINO), asked for
  the classes each prompt names, so objects outside COCO's 80 classes can be scored.

:class:`ColourClassifier` is GenEval's colour rule: CLIP zero-shot over the ten colours with three templates per
colour (``a photo of a {c} {object}``, ``a photo of a {c}-colored {object}``, ``a photo of a {c} object``), on the
object's crop with everything outside its mask painted grey (``#999``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from promptloop_env.geneval_rules import COLOURS, ObjectRecord
from promptloop_env.rewards.clip_common import image_embeddings, load_clip_model, load_clip_processor
from promptloop_env.rewards.geneval_grammar import GENEVAL_CLASSES
from promptloop_env.rewards.model_base import require

# Other spellings of GenEval's classes in detectors' label maps (COCO's own, Pascal VOC's, transformers' configs).
LABEL_ALIASES: dict[str, str] = {
    "mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard", "hair dryer": "hair drier",
    "tvmonitor": "tv", "tv monitor": "tv", "motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
    "pottedplant": "potted plant", "diningtable": "dining table", "doughnut": "donut", "ball": "sports ball",
}  # fmt: skip
DETECTOR_KINDS = ("auto", "mask2former", "object-detection", "zero-shot")


def geneval_label(name: str) -> str:
    """A detector's label in GenEval's spelling (``"mouse"`` -> ``"computer mouse"``; unknown names as they are)."""
    name = name.strip().lower().replace("_", " ").replace("-", " ")
    return LABEL_ALIASES.get(name, name)


def _label_map(id2label: dict[int, str]) -> dict[int, str]:
    labels = {int(i): geneval_label(n) for i, n in id2label.items()}
    if len(labels) == len(GENEVAL_CLASSES) and not set(labels.values()) & set(GENEVAL_CLASSES):
        return dict(enumerate(GENEVAL_CLASSES))  # an unnamed 80-class COCO head (LABEL_0...): COCO's order
    return labels


def box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The box ``(x0, y0, x1, y1)`` of a boolean mask, as mmdetection's ``mask2bbox`` (exclusive ends)."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return float(x0), float(y0), float(x1 + 1), float(y1 + 1)


class _Detector:
    """Loads a transformers detector and its processor; :meth:`detect` returns records per image."""

    auto_class = ""

    def __init__(self, path: str, device: torch.device, dtype: torch.dtype, local_files_only: bool,
                 use_safetensors: bool | None, min_score: float) -> None:  # fmt: skip
        transformers = require("transformers")
        self.processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=local_files_only)
        model_class = getattr(transformers, self.auto_class)
        self.model = model_class.from_pretrained(
            path, local_files_only=local_files_only, use_safetensors=use_safetensors, dtype=dtype
        )
        self.model = self.model.to(device).eval().requires_grad_(False)
        self.labels = _label_map(self.model.config.id2label)
        self.min_score = min_score

    def detect(self, images: list[Image.Image], wanted: list[set[str]]) -> list[list[ObjectRecord]]:
        raise NotImplementedError

    def _inputs(self, **kwargs: Any) -> dict[str, Any]:  # processor outputs on the model's device and dtype
        inputs = self.processor(return_tensors="pt", **kwargs)
        return {
            k: v.to(self.model.device, self.model.dtype if v.is_floating_point() else None) for k, v in inputs.items()
        }


class Mask2FormerDetector(_Detector):
    """Mask2Former instance segmentation (``facebook/mask2former-swin-small-coco-instance`` by default).

    ``image_size`` is the shorter side images are resized to (aspect kept, the longer side at most 1333/800 of
    it, padded to a multiple of 32): 800, as mmdetection's Mask2Former COCO test pipeline that GenEval runs
    (``img_scale=(1333, 800)``); the transformers checkpoints' own processors resize to 384 x 384. ``None``
    keeps the checkpoint processor's size.
    """

    auto_class = "Mask2FormerForUniversalSegmentation"

    def __init__(self, *args: Any, image_size: int | None = 800, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        longest = None if image_size is None else round(image_size * 1333 / 800)
        self.size = None if image_size is None else {"shortest_edge": image_size, "longest_edge": longest}

    def detect(self, images: list[Image.Image], wanted: list[set[str]]) -> list[list[ObjectRecord]]:
        inputs = self._inputs(images=images, **({"size": self.size} if self.size else {}))
        outputs = self.model(**inputs)
        logits = outputs.class_queries_logits.float()
        masks = outputs.masks_queries_logits.float()
        padded = inputs["pixel_values"].shape[-2:]
        valid = inputs.get("pixel_mask")
        out = []
        for i, image in enumerate(images):
            probs = logits[i].softmax(-1)[:, :-1]  # the last class is "no object"
            n_queries, n_classes = probs.shape
            scores, flat = probs.flatten().topk(n_queries)
            keep = scores > self.min_score  # the final score is at most the class probability
            scores, flat = scores[keep], flat[keep]
            queries, classes = flat // n_classes, flat % n_classes
            if len(queries) == 0:
                out.append([])
                continue
            mask = torch.nn.functional.interpolate(masks[i, queries][None], size=padded, mode="bilinear")[0]
            if valid is not None:  # crop the padding, then back to the image's own size
                rows, cols = int(valid[i].any(1).sum()), int(valid[i].any(0).sum())
                mask = mask[:, :rows, :cols]
            mask = torch.nn.functional.interpolate(mask[None], size=image.size[::-1], mode="bilinear")[0]
            binary = mask > 0
            quality = (mask.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
            records = []
            for score, label, m in zip((scores * quality).tolist(), classes.tolist(), binary.cpu().numpy()):
                box = box_of(m)
                if box is not None and score > self.min_score:
                    records.append(ObjectRecord(self.labels[label], box, score, mask=m))
            out.append(records)
        return out


class BoxDetector(_Detector):
    """Any transformers closed-vocabulary object detector (boxes, no masks)."""

    auto_class = "AutoModelForObjectDetection"

    def detect(self, images: list[Image.Image], wanted: list[set[str]]) -> list[list[ObjectRecord]]:
        outputs = self.model(**self._inputs(images=images))
        sizes = [image.size[::-1] for image in images]
        found = self.processor.post_process_object_detection(outputs, threshold=self.min_score, target_sizes=sizes)
        return [
            [
                ObjectRecord(self.labels[int(label)], tuple(map(float, box)), float(score))
                for score, label, box in zip(r["scores"].float(), r["labels"], r["boxes"].float().tolist())
            ]
            for r in found
        ]


class ZeroShotDetector(_Detector):
    """A text-prompted detector, asked for the classes each prompt names."""

    auto_class = "AutoModelForZeroShotObjectDetection"

    def detect(self, images: list[Image.Image], wanted: list[set[str]]) -> list[list[ObjectRecord]]:
        labels = sorted(set().union(*wanted)) or ["object"]  # one list for the batch: no padded queries
        texts = [labels] * len(images)
        queries = [[f"a photo of a {t}" for t in labels]] * len(images)
        outputs = self.model(**self._inputs(images=images, text=queries, padding=True, truncation=True))
        sizes = [image.size[::-1] for image in images]
        found = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.min_score, target_sizes=sizes, text_labels=texts
        )
        out = []
        for r in found:
            boxes, scores = r["boxes"].float().tolist(), r["scores"].float().tolist()
            out.append([ObjectRecord(str(n), tuple(b), s) for s, n, b in zip(scores, r["text_labels"], boxes)])
        return out


def detector_kind(path: str, local_files_only: bool) -> str:
    """``mask2former``, ``zero-shot`` or ``object-detection``, from the checkpoint's config."""
    transformers = require("transformers")
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=local_files_only)
    if config.model_type == "mask2former":
        return "mask2former"
    zero_shot = transformers.models.auto.modeling_auto.MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES
    return "zero-shot" if config.model_type in zero_shot else "object-detection"


def load_detector(path: str | os.PathLike, kind: str, device: torch.device, dtype: torch.dtype,
                  local_files_only: bool, use_safetensors: bool | None, min_score: float,
                  image_size: int | None = 800) -> _Detector:  # fmt: skip
    """A detector of ``kind`` (``auto`` reads it from the checkpoint's config) from a hub id or local folder;
    ``image_size`` is Mask2Former's (see :class:`Mask2FormerDetector`)."""
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"detector_kind must be one of {DETECTOR_KINDS}; got {kind!r}.")
    path = os.fspath(path)
    kind = detector_kind(path, local_files_only) if kind == "auto" else kind
    args = (path, device, dtype, local_files_only, use_safetensors, min_score)
    if kind == "mask2former":
        return Mask2FormerDetector(*args, image_size=image_size)
    return {"object-detection": BoxDetector, "zero-shot": ZeroShotDetector}[kind](*args)


class ColourClassifier:
    """GenEval's colour rule: CLIP zero-shot over :data:`~promptloop_env.geneval_rules.COLOURS` on masked crops.

    Args:
        path: hub id or local folder of a transformers ``CLIPModel`` with its processor (GenEval: ViT-L/14).
        background: the colour painted outside an object's mask (GenEval's ``#999``).
    """

    TEMPLATES = ("a photo of a {c} {label}", "a photo of a {c}-colored {label}", "a photo of a {c} object")

    def __init__(self, path: str | os.PathLike, device: torch.device, dtype: torch.dtype, local_files_only: bool,
                 use_safetensors: bool | None, background: str = "#999") -> None:  # fmt: skip
        self.processor = load_clip_processor(path, local_files_only)
        self.model = load_clip_model(path, device, dtype, local_files_only, use_safetensors)
        self.background = background
        self._classifiers: dict[str, torch.Tensor] = {}

    def _classifier(self, label: str) -> torch.Tensor:
        """``[10, D]``: per colour, the normalised mean of its templates' normalised text embeddings."""
        if label not in self._classifiers:
            from promptloop_env.rewards.clip_common import text_embeddings

            texts = [t.format(c=c, label=label) for c in COLOURS for t in self.TEMPLATES]
            embeds = text_embeddings(self.model, self.processor, texts).view(len(COLOURS), len(self.TEMPLATES), -1)
            mean = embeds.mean(dim=1)
            self._classifiers[label] = mean / mean.norm(dim=-1, keepdim=True)
        return self._classifiers[label]

    def crop(self, image: Image.Image, record: ObjectRecord) -> Image.Image:
        """The object's box, with everything outside its mask (if any) painted :attr:`background`."""
        image = image.convert("RGB")
        if record.mask is not None:
            blank = Image.new("RGB", image.size, self.background)
            image = Image.composite(image, blank, Image.fromarray(np.asarray(record.mask, dtype=np.uint8) * 255))
        return image.crop(record.box)

    def classify(self, image: Image.Image, records: Sequence[ObjectRecord]) -> list[str]:
        """The colour name of each record's object in ``image``."""
        if not records:
            return []
        embeds = image_embeddings(self.model, self.processor, [self.crop(image, r) for r in records])
        return [COLOURS[int((e @ self._classifier(r.label).T).argmax())] for e, r in zip(embeds, records, strict=True)]
