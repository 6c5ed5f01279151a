"""One PromptLoop episode drawn as a filmstrip: the preview at each refinement point with the prompt written on it.

Run: ``python examples/rollout_filmstrip.py --out runs/filmstrip`` (``--backbone toy-shapes --reward toy-fidelity``
for the toy world; writes ``filmstrip.png`` and ``rollout.json``).

The agent is a fixed rewrite rule (the query, then the query with one modifier per refinement), so the picture
shows what the env does: the x0 estimate at each refinement point and the final image with its reward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_env.cli import parse_config
from promptloop_env.testing import run_episode
from promptloop_env.viz import filmstrip, save_png

MODIFIERS = ("bright", "large", "in the center", "high contrast", "detailed")


@dataclass
class Args:
    out: str = field(default="runs/filmstrip", metadata={"help": "output folder"})
    backbone: str = field(default="tiny", metadata={"help": "backbone name, folder or hub id"})
    reward: str = field(default="jpeg-incompressibility", metadata={"help": "reward name"})
    query: str = field(default="a large red circle on the left", metadata={"help": "the user's query"})
    seed: int = field(default=0, metadata={"help": "episode seed"})
    num_inference_steps: int = field(default=20, metadata={"help": "denoising steps"})
    num_refinements: int = field(default=5, metadata={"help": "actions per episode"})


def main(args: Args) -> dict:
    """Play the episode, write the filmstrip and a JSON summary; returns the summary."""
    env = gym.make(
        "PromptLoop-v0",
        backbone=args.backbone,
        reward=args.reward,
        num_inference_steps=args.num_inference_steps,
        num_refinements=args.num_refinements,
        preview="vae",
        preview_size=128,
    )

    def rewrite(obs: dict) -> str:
        segment = int(obs["segment"])
        return args.query if segment == 0 else f"{args.query}, {MODIFIERS[(segment - 1) % len(MODIFIERS)]}"

    observations, reward, info = run_episode(env, args.query, args.seed, actions=rewrite)
    frames = [obs["image"] for obs in observations[:-1]] + [info["final_image"]]
    captions = [f"t={float(obs['timestep'][0]):.2f}: {prompt}" for obs, prompt in zip(observations, info["prompts"])]
    strip = filmstrip(frames, [*captions, f"final, reward {reward:.3f}"], title=f"{args.backbone}: {args.query!r}")
    path = save_png(strip, Path(args.out) / "filmstrip.png")
    summary = {"query": args.query, "reward": reward, "prompts": info["prompts"], "noise_seed": info["noise_seed"]}
    (Path(args.out) / "rollout.json").write_text(json.dumps(summary, indent=2))
    print(f"reward {reward:.4f}; filmstrip written to {path}")
    return summary


if __name__ == "__main__":
    main(parse_config(Args, description=__doc__.split("\n\n")[0]))
