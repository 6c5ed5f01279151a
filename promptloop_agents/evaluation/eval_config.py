"""The ``eval`` section of a run: what ``promptloop eval`` runs and writes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptloop_agents.configs import config_field


@dataclass
class EvalConfig:
    """Evaluation on held-out queries: agents, episodes, metrics and outputs of ``promptloop eval``."""

    _argument_group_name = "evaluation"

    output_dir: str = config_field(
        "runs/eval", "Folder for eval.json, eval.md, samples_<backbone>.png and metrics.json."
    )
    device: str = config_field(
        "auto", "Device of the backbone and the policy: auto (cuda when available) | cpu | cuda:N."
    )
    eval_prompts: str = config_field(
        "toy-compose-test", "Held-out queries: a built-in set name or a text file (one query per line)."
    )
    seeds_per_query: int = config_field(2, "Episodes (noise seeds) per held-out query, the same for every agent.")
    max_queries: int = config_field(
        0, "Use this many queries, drawn across the set's categories (stratified, seeded by --seed); 0 = all."
    )
    metrics: str = config_field(
        "toy-compose,toy-compose-soft", "Comma-separated rewards scored on the final images (the table's columns)."
    )
    agents: str = config_field(
        "identity,one-shot,policy",
        "Comma-separated agents, each [name=]spec (the built-ins are listed in the docs and in `promptloop eval "
        "--help`); a policy folder PATH, PATH:a-priori or PATH:blank; policy = the --policy path.",
    )
    baseline: str = config_field(
        "identity", "Agent the paired differences of the table are taken to (default: the first)."
    )
    refine_schedule: str = config_field(
        "uniform", "Refinement points: uniform | random | step indices like '0,9,11,13,15'."
    )
    static_template: str = config_field(
        "", "Static rewrite template with {query} (default: the query with generic quality modifiers)."
    )
    static_policy: str = config_field(
        "", "Policy folder whose one greedy a-priori rewrite of the query is the static rewrite."
    )
    select_seeds: int = config_field(
        4, "best-static: seeds per candidate rewrite in the selection (apart from test seeds)."
    )
    blank_value: int = config_field(128, "Pixel value of the constant previews of PATH:blank agents (128: mid-grey).")
    sample_queries: int = config_field(8, "Columns (queries, first seed) of the sample grids; 0 = no grid.")
    seed: int = config_field(
        1234, "Evaluation seed: the episodes' env seeds derive from it and the query and seed index."
    )
    num_envs: int = config_field(32, "Episodes stepped together.")
    progress: bool = config_field(True, "Show a progress bar.")

    def __post_init__(self) -> None:
        for name, low in (("seeds_per_query", 1), ("num_envs", 1), ("max_queries", 0), ("sample_queries", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}; got {value!r}.")
        if self.select_seeds < 1:
            raise ValueError(f"--select-seeds must be >= 1; got {self.select_seeds!r}.")

    def resolved_device(self) -> str:
        """``device`` with ``auto`` resolved."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device
