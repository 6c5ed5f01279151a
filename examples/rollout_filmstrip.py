"""One PromptLoop episode drawn as a filmstrip: the preview at each refinement point with the prompt written on it.

Run: ``python examples/rollout_filmstrip.py``  (writes ``runs/filmstrip/filmstrip.png`` and ``rollout.json``)

The toy-compose world (its trained diffusion model and its ``toy-compose-soft`` reward) and the shipped toy-compose
policy, greedy: at each refinement point it looks at the preview (the x0 estimate) and writes the next prompt. The
picture labels each frame with its denoising step, the prompt written there and what that changed, then shows the
final image with its reward. ``--agent rule`` plays a fixed rewrite rule instead (the query, then the query with one
modifier per refinement); ``--backbone toy-shapes --reward toy-fidelity --query "a red circle"`` runs the other
toy world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_env.cli import parse_config
from promptloop_env.testing import run_episode

MODIFIERS = ("bright", "large", "in the center", "high contrast", "detailed")


@dataclass
class Args:
    out: str = field(default="runs/filmstrip", metadata={"help": "output folder"})
    backbone: str = field(default="toy-compose", metadata={"help": "backbone name, folder or hub id"})
    reward: str = field(default="toy-compose-soft", metadata={"help": "reward name (the backbone's world's)"})
    agent: str = field(default="policy", metadata={"help": "policy (the shipped toy policy, greedy) | rule"})
    query: str = field(default="a red triangle and a green circle", metadata={"help": "the user's query"})
    seed: int = field(default=0, metadata={"help": "episode seed"})
    num_inference_steps: int = field(default=20, metadata={"help": "denoising steps"})
    refine_schedule: str = field(default="0,9,11,13,15", metadata={"help": "steps at which a prompt is written"})


def make_agent(args: Args):
    """``obs -> prompt``: the shipped toy policy of the backbone's world (greedy), or the fixed rewrite rule."""
    if args.agent == "rule":

        def rule(obs: dict) -> str:
            segment = int(obs["segment"])
            return args.query if segment == 0 else f"{args.query}, {MODIFIERS[(segment - 1) % len(MODIFIERS)]}"

        return rule
    from promptloop_agents.evaluation.agents import shipped_policy
    from promptloop_agents.policies.mllm import MLLMAgent

    policy = MLLMAgent.from_pretrained(shipped_policy(args.backbone), do_sample=False)
    policy.reset(seed=args.seed)
    return policy.act


def main(args: Args) -> dict:
    """Play the episode, write the filmstrip and a JSON summary; returns the summary."""
    from promptloop_agents.evaluation.plots import filmstrip
    from promptloop_agents.rollout import Episode

    env = gym.make(
        "PromptLoop-v0",
        backbone=args.backbone,
        reward=args.reward,
        num_inference_steps=args.num_inference_steps,
        num_refinements=len(args.refine_schedule.split(",")),
        refine_schedule=args.refine_schedule,
        preview="vae",
    )
    observations, reward, info = run_episode(env, args.query, args.seed, actions=make_agent(args))
    episode = Episode(
        query=args.query,
        seed=args.seed,
        prompts=list(info["prompts"]),
        timesteps=[float(obs["timestep"][0]) for obs in observations[:-1]],
        reward=float(reward),
        previews=[obs["image"] for obs in observations[:-1]],
        final_image=info["final_image"],
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    label = "shipped policy" if args.agent == "policy" else "rewrite rule"
    path = filmstrip([episode], out / "filmstrip.png", [label], args.num_inference_steps)
    summary = {"query": args.query, "reward": reward, "prompts": info["prompts"], "noise_seed": info["noise_seed"]}
    (out / "rollout.json").write_text(json.dumps(summary, indent=2))
    print(f"reward {reward:.4f}; filmstrip written to {path}")
    return summary


if __name__ == "__main__":
    main(parse_config(Args, description=__doc__.split("\n\n")[0]))
