"""TorchRL check: PromptLoop through ``torchrl.envs.GymEnv``, raw (text actions) and with a discrete action.

Run: ``python examples/torchrl_gymenv.py``  (``pip install -e .[torchrl]``; the toy-compose world, prints the rewards)

TorchRL (0.14) maps the ``Text`` fields to ``NonTensor`` specs, so the raw env rolls out with a policy that
writes prompts as strings; with :class:`~promptloop_env.wrappers.DiscretizePrompt` and
:class:`~promptloop_env.wrappers.DropTextObservation` it becomes an all-tensor env (one-hot action) that passes
``check_env_specs`` and fits TorchRL's usual categorical policies and collectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import torch
from gymnasium.error import DependencyNotInstalled

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_agents.configs import EnvConfig
from promptloop_env.cli import parse_config, with_defaults
from promptloop_env.wrappers import DiscretizePrompt, DropTextObservation

MODIFIERS = ["", "bright colours", "high contrast"]
ENV_DEFAULTS = {
    "backbone": "toy-compose",
    "reward": "toy-compose-soft",
    "num_inference_steps": 8,
    "num_refinements": 2,
    "preview": "latent_rgb",
    "preview_size": 32,
}
"""This example's env: the toy-compose world, short episodes, small latent previews."""


@dataclass
class Args(with_defaults(EnvConfig, **ENV_DEFAULTS)):
    """The env's arguments (:class:`~promptloop_agents.configs.EnvConfig`, this example's defaults) and the seed."""

    seed: int = field(default=0, metadata={"help": "env seed"})


def main(args: Args) -> dict[str, float]:
    try:
        from torchrl.envs import GymEnv, GymWrapper
        from torchrl.envs.utils import check_env_specs
    except ImportError as err:
        raise DependencyNotInstalled("This example needs torchrl: pip install -e .[torchrl]") from err

    torch.set_num_threads(1)
    kwargs = args.env_kwargs()
    # 1. The raw env: text observations and actions as NonTensor data; the policy writes a prompt per step.
    raw = GymEnv("PromptLoop-v0", **kwargs)
    raw.set_seed(args.seed)

    def brighten(td):
        return td.set("action", f"{td['query']}, bright colours")

    rollout = raw.rollout(args.num_refinements, policy=brighten)
    raw_reward = float(rollout["next", "reward"].sum())
    print(f"raw GymEnv: {rollout.batch_size[0]} steps, prompts {rollout['action']}, reward {raw_reward:.3f}")

    # 2. The all-tensor version for categorical policies.
    wrapped = GymWrapper(
        DiscretizePrompt(DropTextObservation(gym.make("PromptLoop-v0", **kwargs)), modifiers=MODIFIERS)
    )
    wrapped.set_seed(args.seed)
    check_env_specs(wrapped)
    rollout = wrapped.rollout(args.num_refinements)
    discrete_reward = float(rollout["next", "reward"].sum())
    print(
        f"discrete GymWrapper: specs checked, action spec {type(wrapped.action_spec).__name__}, "
        f"reward {discrete_reward:.3f}"
    )
    return {"raw_reward": raw_reward, "discrete_reward": discrete_reward}


if __name__ == "__main__":
    main(parse_config(Args, description=__doc__.split("\n\n")[0]))
