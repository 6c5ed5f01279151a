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


@runtime_checkable
class TrainablePolicy(Protocol):
    """What :class:`~promptloop_agents.learners.grpo_trainer.GRPOTrainer` needs from a policy (``MLLMAgent`` is one).

    ``sample`` draws the actions of a batch of observations and returns a sample with at least ``prompts``
    (one per observation), ``completions`` (the generated token ids) and ``malformed`` (answers that could
    not be parsed); ``collate`` turns ``(sample, row)`` pairs into one forward's inputs, an object with a
    ``completion_mask`` ``[B, L]``; ``logps`` recomputes the per-token log-probabilities of those completions
    under ``model`` (the trainer's wrapped model, the reference or the policy itself), with the same
    sampling distribution as ``sample``, so that an unchanged model gives an importance ratio of exactly 1.
    """

    model: Any

    def sample(self, observations: list[Observation], model: Any | None = None) -> Any:
        """Generate the next prompts for a batch of observations (with ``model`` when given)."""
        ...

    def collate(self, rows: Any) -> Any:
        """One forward's inputs for the given ``(sample, row)`` actions."""
        ...

    def logps(self, model: Any, batch: Any, with_entropy: bool = False) -> Any:
        """Per-token log-probabilities ``[B, L]`` (and entropies with ``with_entropy``) of ``batch``'s completions."""
        ...

    def save_pretrained(self, path: Any) -> None:
        """Save the policy so that it can be loaded again."""
        ...
