"""The toy world: procedurally drawn one-shape scenes, their captions and exactly computable rewards.

``world`` draws scenes and writes captions, ``analyser`` reads an image back into the same attributes,
``rewards`` scores images against queries (``toy-fidelity``, ``toy-aesthetic``), ``prompts`` holds the
train / test query sets, ``tokenizer`` builds the CLIP-style tokenizer over the world's words, and
``train`` trains the small diffusers pipelines shipped as ``backbone="toy-shapes"`` and ``"toy-compose"``.

The compositional world (``backbone="toy-compose"``): ``compose`` draws scenes of 1 to 4 objects and writes
GenEval-style texts, ``compose_analyser`` reads every object back, ``compose_spec`` parses texts into what they
ask for and scores images by GenEval's rule (rewards ``toy-compose`` and ``toy-compose-soft``), and
``compose_prompts`` holds the train / test sets of its six categories.
"""

from promptloop_env.backbones import BACKBONES, PackageFolder

# Each world registers its backbone here, and its rewards and prompt sets in the modules that define them.
BACKBONES.register(
    "toy-shapes",
    PackageFolder(
        "toy/assets/toy-shapes",
        description="the embedded toy world: a small StableDiffusionPipeline trained on procedurally drawn shapes",
        options={
            "default_guidance_scale": 1.0,
            "world": "toy-shapes",
            "default_reward": "toy-fidelity",
            "default_prompts": "toy-train",
        },
    ),
)
BACKBONES.register(
    "toy-compose",
    PackageFolder(
        "toy/assets/toy-compose",
        description="the compositional toy world: 1 to 4 shapes, GenEval's six categories, failing as real models do",
        options={
            "default_guidance_scale": 1.0,
            "world": "toy-compose",
            "default_reward": "toy-compose",
            "default_prompts": "toy-compose-train",
        },
    ),
)

from promptloop_env.toy import compose_prompts, prompts, rewards  # noqa: E402, F401  (they register theirs)
