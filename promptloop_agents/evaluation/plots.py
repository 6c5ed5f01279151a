"""Pictures of a run: reward curve, trajectory filmstrip and before/after grid (matplotlib, lazily imported)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from gymnasium.error import DependencyNotInstalled

from promptloop_agents.rollout import Episode


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise DependencyNotInstalled('Plots need matplotlib: pip install "promptloop[agents]"') from err
    return plt


def _wrap(text: str, width: int = 22) -> str:
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in text)  # the default font lacks most other glyphs
    return "\n".join(textwrap.wrap(text, width)[:4])


def reward_curve(metrics_file: str | Path, out: str | Path, window: int = 10) -> Path:
    """Plot the mean training reward per iteration (and its running mean) from a ``metrics.jsonl`` log."""
    plt = _pyplot()
    rows = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line.strip()]
    its = np.array([r["iteration"] for r in rows])
    rewards = np.array([r["reward_mean"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(its, rewards, alpha=0.35, label="mean reward per iteration")
    if len(rewards) >= window:
        smooth = np.convolve(rewards, np.ones(window) / window, mode="valid")
        ax.plot(its[window - 1 :], smooth, label=f"running mean ({window})")
    ax.set_xlabel("GRPO iteration")
    ax.set_ylabel("training reward")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def filmstrip(episodes: Sequence[Episode], out: str | Path, labels: Sequence[str] | None = None) -> Path:
    """One row per episode: the preview the agent saw at each refinement with the prompt it wrote, then the final.

    Rows are the env's :func:`promptloop_env.viz.filmstrip`, stacked.

    Args:
        episodes: episodes run with ``keep_images=True``.
        out: PNG path.
        labels: a row label per episode (e.g. the agent's name); default the query.
    """
    from promptloop_env.viz import filmstrip as strip
    from promptloop_env.viz import save_png, stack_rows

    rows = []
    for row, episode in enumerate(episodes):
        frames = [*episode.previews, episode.final_image]
        captions = [f"t={t:.2f}: {p}" for t, p in zip(episode.timesteps, episode.prompts, strict=True)]
        captions.append(f"final, reward {episode.reward:.2f}")
        title = f"{labels[row]}: {episode.query}" if labels else episode.query
        rows.append(strip(frames, captions, frame_size=128, title=title))
    return save_png(stack_rows(rows), out)


def before_after_grid(
    before: Sequence[Episode], after: Sequence[Episode], out: str | Path, names: tuple[str, str] = ("before", "after")
) -> Path:
    """Final images of two agents on the same (query, seed) episodes: one column per episode, one row per agent."""
    plt = _pyplot()
    n = len(before)
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 4.4), squeeze=False)
    for col, (a, b) in enumerate(zip(before, after, strict=True)):
        for row, (episode, name) in enumerate(((a, names[0]), (b, names[1]))):
            ax = axes[row][col]
            ax.imshow(episode.final_image)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"r={episode.reward:.2f}", fontsize=7)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
        axes[1][col].set_xlabel(_wrap(a.query, 18), fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)
