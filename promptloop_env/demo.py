"""A short PromptLoop rollout that writes a trajectory filmstrip: ``python -m promptloop_env.demo --out runs/demo``.

The agent here is a fixed rewrite rule (the query, then the query with one modifier per refinement), so
the picture shows what the env does: previews of the x0 estimate at each refinement point with the
prompt written on it, and the final image with its reward.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_env.viz import filmstrip, save_png

MODIFIERS = ("bright", "large", "in the center", "high contrast", "detailed")


def rollout(env: gym.Env, query: str, seed: int) -> tuple[list[np.ndarray], list[str], float, dict]:
    """One episode; returns the previews, the prompt written on each, the reward and the last info."""
    obs, info = env.reset(seed=seed, options={"query": query})
    frames, captions = [], []
    terminated = False
    prompt = query
    i = 0
    while not terminated:
        frames.append(obs["image"])
        captions.append(f"t={obs['timestep'][0]:.2f}: {prompt}")
        obs, reward, terminated, _, info = env.step(prompt)
        prompt = f"{query}, {MODIFIERS[i % len(MODIFIERS)]}"
        i += 1
    frames.append(info["final_image"])
    captions.append(f"final, reward {reward:.3f}")
    return frames, captions, reward, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--backbone", default="tiny", help="backbone name, folder or hub id")
    parser.add_argument("--reward", default="jpeg-incompressibility", help="reward name")
    parser.add_argument("--query", default="a large red circle on the left", help="the user's query")
    parser.add_argument("--seed", type=int, default=0, help="episode seed")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps")
    parser.add_argument("--refinements", type=int, default=5, help="actions per episode")
    args = parser.parse_args(argv)
    env = gym.make(
        "PromptLoop-v0",
        backbone=args.backbone,
        reward=args.reward,
        num_inference_steps=args.steps,
        num_refinements=args.refinements,
        preview="vae",
        preview_size=128,
    )
    frames, captions, reward, info = rollout(env, args.query, args.seed)
    out = Path(args.out)
    path = save_png(
        filmstrip(frames, captions, title=f"{args.backbone}: {args.query!r}, seed {args.seed}"), out / "filmstrip.png"
    )
    summary = {"query": args.query, "reward": reward, "prompts": info["prompts"], "noise_seed": info["noise_seed"]}
    (out / "rollout.json").write_text(json.dumps(summary, indent=2))
    print(f"reward {reward:.4f}; filmstrip written to {path}")


if __name__ == "__main__":
    main()
