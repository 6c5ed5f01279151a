"""The ``geneval`` reward on tiny random stand-ins (Mask2Former, OWLv2, CLIP) saved as safetensors and loaded back
through its real ``from_pretrained`` path, a stub detector with known objects, the env and the folder command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from promptloop_env.geneval_rules import COLOURS, ObjectRecord
from promptloop_env.rewards import MissingWeightsError, make_reward
from promptloop_env.rewards import geneval as geneval_module
from promptloop_env.rewards.geneval import GenEval
from promptloop_env.rewards.geneval_grammar import GENEVAL_CLASSES
from promptloop_env.testing import save_tiny_clip, tiny_clip_tokenizer

transformers = pytest.importorskip("transformers")
COCO_NAMES = [
    {"computer mouse": "mouse", "tv remote": "remote", "computer keyboard": "keyboard"}.get(n, n)
    for n in GENEVAL_CLASSES
]  # fmt: skip  (transformers' COCO spelling, mapped back by the reward)


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    """Tiny Mask2Former (COCO's 80 labels), OWLv2 and CLIP folders, each with its processor, safetensors only."""
    root = tmp_path_factory.mktemp("geneval")
    swin = transformers.SwinConfig(image_size=64, embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                   window_size=2, out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip
    config = transformers.Mask2FormerConfig(
        backbone_config=swin, num_labels=80, id2label=dict(enumerate(COCO_NAMES)),
        label2id={n: i for i, n in enumerate(COCO_NAMES)}, hidden_dim=32, num_queries=8, encoder_layers=1,
        decoder_layers=2, feature_size=32, mask_feature_size=32, dim_feedforward=32, num_attention_heads=2,
        encoder_feedforward_dim=32,
    )  # fmt: skip
    m2f = root / "mask2former"
    _randomize(transformers.Mask2FormerForUniversalSegmentation(config), 0).save_pretrained(m2f)
    transformers.Mask2FormerImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(m2f)

    owl = root / "owlv2"
    tokenizer = tiny_clip_tokenizer(str(root / "owl_tokenizer"))
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    owl_config = transformers.Owlv2Config(
        text_config={**common, "vocab_size": len(tokenizer), "max_position_embeddings": 32,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**common, "image_size": 32, "patch_size": 8}, projection_dim=32,
    )  # fmt: skip
    _randomize(transformers.Owlv2ForObjectDetection(owl_config), 1).save_pretrained(owl)
    image_processor = transformers.Owlv2ImageProcessorPil(size={"height": 32, "width": 32})
    transformers.Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(owl)

    detr = root / "detr"
    resnet = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 16], depths=[1, 1, 1, 1],
                                       out_features=["stage4"])  # fmt: skip
    detr_config = transformers.DetrConfig(
        use_timm_backbone=False, backbone_config=resnet, use_pretrained_backbone=False, d_model=16,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=6, num_labels=80,
        id2label=dict(enumerate(COCO_NAMES)), label2id={n: i for i, n in enumerate(COCO_NAMES)},
    )  # fmt: skip
    _randomize(transformers.DetrForObjectDetection(detr_config), 3).save_pretrained(detr)
    transformers.DetrImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 64}).save_pretrained(detr)

    clip = root / "clip"
    save_tiny_clip(str(clip), seed=2)
    for folder in (m2f, owl, detr, clip):
        assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    return {"mask2former": str(m2f), "owlv2": str(owl), "detr": str(detr), "clip": str(clip)}


def images(n: int = 3, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def reward_for(folders, detector="mask2former", **kwargs) -> GenEval:
    kwargs = {"detector_size": 64, **kwargs}  # the tiny Swin's scale (the default, 800, is mmdetection's)
    return GenEval(detector=folders[detector], clip=folders["clip"], device="cpu", local_files_only=True, **kwargs)


class StubColours:
    """Names each object's colour from a ``{label: colour}`` table."""

    def __init__(self, colours: dict[str, str]) -> None:
        self.colours = colours

    def classify(self, image, records):
        return [self.colours[r.label] for r in records]


class StubDetector:
    """Returns the given objects for every image (what a detector would have found)."""

    def __init__(self, objects: list[ObjectRecord]) -> None:
        self.objects = objects
        self.asked: list[set[str]] = []

    def detect(self, images, wanted):
        self.asked += wanted
        return [list(self.objects) for _ in images]


def test_mask2former_and_clip_load_through_from_pretrained_and_score_a_batch(folders):
    reward = reward_for(folders, batch_size=2)
    make_reward({reward: 1.0})  # loads now, as gym.make does
    assert type(reward.detector).__name__ == "Mask2FormerDetector"
    assert reward.detector.labels[64] == "computer mouse"  # transformers' "mouse" in GenEval's spelling
    queries = ["a photo of a dog", "a photo of two cats", "a photo of a red car and a blue bench"]
    scores = reward(images(), queries)
    assert len(scores) == 3 and set(scores) <= {0.0, 1.0}
    assert [d["tag"] for d in reward.details] == ["single_object", "counting", "color_attr"]
    assert list(reward.details[2]["constraints"]) == ["car", "red car", "bench", "blue bench"]
    for detail in reward.details:
        assert all(o["label"] in GENEVAL_CLASSES and o["score"] > 0.3 for o in detail["objects"])
    one_by_one = reward_for(folders, batch_size=1)
    assert one_by_one(images(), queries) == scores  # batching does not change a verdict
    assert [d["objects"] for d in one_by_one.details] == [d["objects"] for d in reward.details]


def test_mask2former_resizes_as_mmdetection_unless_asked_otherwise(folders):
    pil = [Image.fromarray(images(1)[0])]  # 48 x 64
    for size, shape in ((800, (800, 1088)), (32, (32, 64)), (None, (64, 96))):  # None: the processor's own
        reward = reward_for(folders, detector_size=size)
        reward.load()
        kwargs = {"size": reward.detector.size} if reward.detector.size else {}
        assert tuple(reward.detector._inputs(images=pil, **kwargs)["pixel_values"].shape[-2:]) == shape


def test_mask2former_detections_carry_masks_and_boxes_from_them(folders):
    reward = reward_for(folders, detection_threshold=0.0, counting_threshold=0.0)
    reward.load()
    pil = [Image.fromarray(image) for image in images(2)]
    found = reward.detector.detect(pil, [{"dog"}, {"dog"}])
    assert any(found)
    for record in (r for image in found for r in image):
        assert record.mask.shape == (48, 64) and record.mask.dtype == bool
        rows, cols = np.nonzero(record.mask)
        assert record.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_an_owlv2_zero_shot_detector_by_option_is_asked_for_the_prompts_classes(folders):
    reward = reward_for(folders, detector="owlv2", detection_threshold=0.0, counting_threshold=0.0)
    reward.load()
    assert type(reward.detector).__name__ == "ZeroShotDetector"
    scores = reward(images(2), ["a photo of a dog", "a photo of a cat left of a dog"])
    assert len(scores) == 2
    labels = {o["label"] for d in reward.details for o in d["objects"]}
    assert labels and labels <= {"dog", "cat"}


def test_any_transformers_object_detector_by_option_gives_boxes_without_masks(folders):
    reward = reward_for(folders, detector="detr", detection_threshold=0.0, counting_threshold=0.0)
    reward.load()
    assert type(reward.detector).__name__ == "BoxDetector"
    found = reward.detector.detect([Image.fromarray(images(1)[0])], [{"dog"}])[0]
    assert found and all(r.mask is None and r.label in GENEVAL_CLASSES for r in found)
    assert len(reward(images(2), ["a photo of a red car", "a photo of two dogs"])) == 2
    assert all(o["colour"] in COLOURS for o in reward.details[0]["objects"] if o["label"] == "car")


def test_clip_names_one_of_genevals_colours_on_a_crop_masked_with_grey(folders):
    reward = reward_for(folders)
    reward.load()
    image = Image.fromarray(np.full((20, 30, 3), 200, dtype=np.uint8))
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:10, 10:20] = True
    record = ObjectRecord("car", (8, 4, 22, 12), 0.9, mask=mask)
    crop = np.asarray(reward.colours.crop(image, record))
    assert crop.shape == (8, 14, 3)
    assert (crop[0, 0] == 153).all() and (crop[3, 5] == 200).all()  # outside the mask: #999; inside: the image
    unmasked = np.asarray(reward.colours.crop(image, ObjectRecord("car", (8, 4, 22, 12), 0.9)))  # a box detector's
    assert unmasked.shape == (8, 14, 3) and (unmasked == 200).all()
    assert reward.colours.classify(image, [record, record]) == [reward.colours.classify(image, [record])[0]] * 2
    assert reward.colours.classify(image, [record])[0] in COLOURS
    assert reward.colours._classifier("car").shape[0] == len(COLOURS)


def test_every_rule_through_the_reward_on_a_stub_detectors_objects(folders):
    reward = reward_for(folders, soft=False)
    reward.load()

    def score(objects, query, colours=None):
        reward.detector = StubDetector(objects)
        reward.colours = StubColours(colours or {})
        value = reward(images(1), [query])[0]
        return value, reward.details[0]

    dog = ObjectRecord("dog", (40, 20, 50, 30), 0.95)
    cat_left = ObjectRecord("cat", (10, 20, 20, 30), 0.8)
    assert score([dog, cat_left], "a photo of a cat left of a dog")[0] == 1.0
    assert score([dog, cat_left], "a photo of a cat right of a dog")[0] == 0.0
    three = [ObjectRecord("dog", (10 * i, 0, 10 * i + 8, 8), 0.95) for i in range(3)]
    assert score(three, "a photo of three dogs")[0] == 1.0
    assert score([*three, ObjectRecord("dog", (40, 0, 48, 8), 0.92)], "a photo of three dogs")[0] == 0.0
    value, detail = score([dog, cat_left], "a photo of a red dog and a blue cat", {"dog": "red", "cat": "green"})
    assert value == 0.0 and detail["constraints"] == {"dog": True, "red dog": True, "cat": True, "blue cat": False}
    assert [o["colour"] for o in detail["objects"]] == ["red", "green"]
    assert reward.detector.asked == [{"dog", "cat"}]
    soft = reward_for(folders, soft=True)
    soft._loaded, soft.detector, soft.colours = True, reward.detector, reward.colours
    assert soft(images(1), ["a photo of a red dog and a blue cat"]) == [0.75]


def test_a_query_outside_the_grammar_is_refused_before_any_model_runs(folders):
    reward = reward_for(folders)
    reward.load()
    reward.detector = StubDetector([])
    with pytest.raises(ValueError, match="not in GenEval's grammar"):
        reward(images(1), ["a majestic castle at dawn"])
    assert reward.detector.asked == []


def test_metadata_of_a_users_jsonl_file_is_used_for_its_prompts(folders, tmp_path):
    from promptloop_env.prompts import load_prompts

    path = tmp_path / "mine.jsonl"
    meta = {"prompt": "my cosy kitchen with a cat", "tag": "single_object", "include": [{"class": "cat", "count": 1}]}
    path.write_text(json.dumps(meta) + "\n")
    load_prompts(str(path))
    reward = reward_for(folders)
    assert reward.spec_for("my cosy kitchen with a cat").include[0].label == "cat"


def test_missing_weights_fail_at_gym_make_naming_both_ids(monkeypatch):
    import gymnasium as gym
    import huggingface_hub

    import promptloop_env  # noqa: F401

    for repo in (geneval_module.DEFAULT_DETECTOR, geneval_module.DEFAULT_CLIP):
        if isinstance(huggingface_hub.try_to_load_from_cache(repo, "config.json"), str):
            pytest.skip("the real weights are in this machine's hub cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pattern = r"(?s)'facebook/mask2former-swin-small-coco-instance'.*'openai/clip-vit-large-patch14'"
    with pytest.raises(MissingWeightsError, match=pattern):
        gym.make("PromptLoop-v0", backbone="tiny", reward="geneval", prompts="geneval")


def test_gym_make_with_the_geneval_reward_and_set_scores_detector_records_by_the_shared_rules(folders, monkeypatch):
    import gymnasium as gym

    import promptloop_env  # noqa: F401
    from promptloop_env import geneval_rules
    from promptloop_env.rewards.geneval_detectors import Mask2FormerDetector
    from promptloop_env.testing import run_episode

    monkeypatch.setattr(geneval_module, "DEFAULT_DETECTOR", folders["mask2former"])
    monkeypatch.setattr(geneval_module, "DEFAULT_CLIP", folders["clip"])
    seen = []
    real_detect = Mask2FormerDetector.detect

    def spy(self, images, wanted):
        found = real_detect(self, images, wanted)
        seen.append((images[0], found[0]))
        return found

    monkeypatch.setattr(Mask2FormerDetector, "detect", spy)
    env = gym.make("PromptLoop-v0", backbone="tiny", reward="geneval", prompts="geneval", num_inference_steps=2,
                   num_refinements=1, preview="none", device="cpu")  # fmt: skip
    reward = env.unwrapped.core.reward_fn.parts[0][1]
    assert isinstance(reward, GenEval) and reward._loaded
    query = "a photo of a dog right of a teddy bear"
    _, value, info = run_episode(env, query, seed=0)
    detail = reward.details[-1]
    assert detail["tag"] == "position" and list(detail["constraints"]) == [
        "teddy bear",
        "dog",
        "dog right of teddy bear",
    ]
    image, records = seen[-1]
    spec = reward.spec_for(query)
    assert value == reward.score_objects(image, spec, records)["strict"] == info["reward_components"]["geneval"]
    kept = geneval_rules.keep_detections(records, "position")
    assert detail["constraints"] == geneval_rules.check(kept, spec)  # no colours asked: the records as detected

    # A detector that finds what the query asks for gives 1.0, through the same env.
    teddy, dog = ObjectRecord("teddy bear", (2, 2, 10, 10), 0.9), ObjectRecord("dog", (20, 2, 28, 10), 0.9)
    monkeypatch.setattr(Mask2FormerDetector, "detect", lambda self, images, wanted: [[teddy, dog] for _ in images])
    assert run_episode(env, query, seed=1)[1] == 1.0
    env.close()


def test_the_folder_command_scores_genevals_layout_and_flat_files(folders, tmp_path, capsys):
    from promptloop_env.rewards.geneval_cli import main

    sample = tmp_path / "run" / "00003" / "samples"
    sample.mkdir(parents=True)
    (sample.parent / "metadata.jsonl").write_text(json.dumps({"prompt": "a photo of a cow", "tag": "single_object",
                                                              "include": [{"class": "cow", "count": 1}]}))  # fmt: skip
    Image.fromarray(images(1)[0]).save(sample / "0000.png")
    Image.fromarray(images(1)[0]).save(tmp_path / "run" / "7_a.png")  # geneval prompt 7, flat
    out = tmp_path / "results.jsonl"
    rows = main([str(tmp_path / "run"), "--out", str(out), "--detector", folders["mask2former"],
                 "--clip", folders["clip"], "--device", "cpu", "--local-files-only"])  # fmt: skip
    assert [r["prompt"] for r in rows] == ["a photo of a cow", "a photo of a surfboard"]
    assert [json.loads(line)["tag"] for line in out.read_text().splitlines()] == ["single_object"] * 2
    assert "Overall score (avg. over tasks):" in capsys.readouterr().out
    official = tmp_path / "official.jsonl"  # what GenEval's evaluate_images.py writes, one verdict flipped
    official.write_text("".join(json.dumps({"filename": f"elsewhere/{r['filename']}", "tag": r["tag"],
                                            "correct": i == 0 and not r["correct"] or (i == 1 and r["correct"])})
                                + "\n" for i, r in enumerate(rows)))  # fmt: skip
    main([str(tmp_path / "run"), "--out", str(out), "--detector", folders["mask2former"], "--clip", folders["clip"],
          "--device", "cpu", "--local-files-only", "--compare", str(official)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "Agreement with official.jsonl on 2 images: 50.00%" in printed and "Overall score: ours" in printed


def test_strict_and_soft_parts_share_one_copy_of_the_models(folders):
    strict, soft = reward_for(folders), reward_for(folders, soft=True)
    combined = make_reward({("strict", strict): 1.0, ("soft", soft): 0.0})
    assert strict.detector is soft.detector and strict.colours is soft.colours
    parts = combined.components(images(2), ["a photo of a dog and a cat", "a photo of a red car"])
    assert set(parts) == {"strict", "soft"} and all(s <= t for s, t in zip(parts["strict"], parts["soft"]))


def test_models_run_in_the_given_dtype(folders):
    reward = reward_for(folders, torch_dtype=torch.bfloat16, detection_threshold=0.0, counting_threshold=0.0)
    scores = reward(images(2), ["a photo of a red dog", "a photo of two cats"])
    assert len(scores) == 2 and reward.detector.model.dtype == reward.colours.model.dtype == torch.bfloat16
    assert reward.details[0]["objects"]  # at threshold 0 every instance is kept
    record = ObjectRecord("dog", (2, 2, 30, 30), 0.9, mask=np.ones((48, 64), dtype=bool))
    assert reward.colours.classify(Image.fromarray(images(1)[0]), [record])[0] in COLOURS


def test_the_command_runs_as_a_module():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "promptloop_env.rewards.geneval", "--help"], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parents[2])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--compare" in done.stdout and "--detector-size" in done.stdout
