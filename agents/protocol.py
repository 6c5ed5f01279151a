"""The agent protocol: what every PromptLoop agent offers, and a batched call that works for all of them."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

Observation = dict[str, Any]


@runtime_checkable
class Agent(Protocol):
    """A PromptLoop agent: reset per episode, then map each observation to the next complete prompt.

    The observation is the env's ``Dict``: ``image`` (the x0 preview), ``query``, ``prompt`` (in force),
    ``segment`` (actions taken) and ``timestep`` (fraction of denoising done).
    """

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode (``seed`` makes any randomness in the agent reproducible)."""
        ...

    def act(self, observation: Observation) -> str:
        """Return the prompt to use from now until the next decision."""
        ...


def act_batch(agent: Agent, observations: list[Observation]) -> list[str]:
    """Prompts for several running episodes: the agent's own ``act_batch`` when it has one, else ``act`` each."""
    batched = getattr(agent, "act_batch", None)
    if batched is not None:
        return list(batched(observations))
    return [agent.act(observation) for observation in observations]
