"""The toy world: procedurally drawn one-shape scenes, their captions and exactly computable rewards.

``world`` draws scenes and writes captions, ``analyser`` reads an image back into the same attributes,
``rewards`` scores images against queries (``toy-fidelity``, ``toy-aesthetic``), ``prompts`` holds the
train / test query sets, ``tokenizer`` builds the CLIP-style tokenizer over the world's words, and
``train`` trains the small diffusers pipeline shipped as ``backbone="toy-shapes"``.
"""
