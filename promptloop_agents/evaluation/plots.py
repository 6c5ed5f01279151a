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


def reward_curve(metrics_file: str | Path, out: str | Path, window: int = 10, reward: str = "") -> Path:
    """Plot the mean training reward per iteration (and its running mean) from a ``metrics.jsonl`` log; ``reward``
    names it on the y axis."""
    plt = _pyplot()
    rows = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line.strip()]
    its = np.array([r["iteration"] for r in rows])
    rewards = np.array([r["reward_mean"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(its, rewards, alpha=0.35, label="mean over the iteration's episodes")
    if len(rewards) >= window:
        smooth = np.convolve(rewards, np.ones(window) / window, mode="valid")
        ax.plot(its[window - 1 :], smooth, label=f"running mean ({window})")
    ax.set_xlabel("GRPO iteration")
    ax.set_ylabel(f"training reward ({reward})" if reward else "training reward")
    ax.set_title("GRPO training reward (training queries, sampled prompts)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def prompt_change(before: str, after: str) -> str:
    """What changed between two prompts, in words: ``kept the prompt``, or the words added and removed.

    >>> prompt_change("a red circle", "a red circle")
    'kept the prompt'
    >>> prompt_change("two circles", "three circles, left")
    "added 'three', 'left'; removed 'two'"
    """
    if before == after:
        return "kept the prompt"
    old, new = before.replace(",", " ").split(), after.replace(",", " ").split()
    added = [w for w in dict.fromkeys(new) if w not in old]
    removed = [w for w in dict.fromkeys(old) if w not in new]
    parts = [f"added {', '.join(repr(w) for w in added)}"] if added else []
    parts += [f"removed {', '.join(repr(w) for w in removed)}"] if removed else []
    return "; ".join(parts) or "reworded the prompt"


def filmstrip(
    episodes: Sequence[Episode], out: str | Path, labels: Sequence[str] | None = None, num_inference_steps: int = 0
) -> Path:
    """One row per episode: the preview the agent saw at each refinement, the prompt it wrote there and what that
    changed (in words), then the final image with its reward.

    Rows are the env's :func:`promptloop_env.viz.filmstrip`, stacked.

    Args:
        episodes: episodes run with ``keep_images=True``.
        out: PNG path.
        labels: a row label per episode (e.g. the agent's name), written before the query.
        num_inference_steps: the episodes' denoising steps, to label frames ``step k of N`` (0: by progress).
    """
    from promptloop_env.viz import filmstrip as strip
    from promptloop_env.viz import save_png, stack_rows

    rows = []
    for row, episode in enumerate(episodes):
        frames = [*episode.previews, episode.final_image]
        captions, current = [], episode.query
        for k, (t, prompt) in enumerate(zip(episode.timesteps, episode.prompts, strict=True)):
            step = _step_label(t, num_inference_steps)
            change = prompt_change(current, prompt) if k else ("kept the query" if prompt == current else "rewrote it")
            captions.append(f"{step}, preview seen -> prompt: '{_ascii(prompt)}' ({change})")
            current = prompt
        captions.append(f"final image; reward {episode.reward:.2f}")
        query = f"query '{_ascii(episode.query)}'"
        title = f"{labels[row]}, {query}" if labels else query
        rows.append(strip(frames, captions, frame_size=128, title=title, chars_per_line=22))
    return save_png(stack_rows(rows), out)


def _step_label(timestep: float, num_inference_steps: int) -> str:
    """``step k of N`` from the progress ``timestep`` (the fraction of the denoising steps already taken)."""
    if not num_inference_steps:
        return f"{timestep:.0%} denoised"
    return f"step {round(timestep * num_inference_steps)} of {num_inference_steps}"


def _ascii(text: str) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)  # the default font lacks most other glyphs


def image_table(
    rows: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    out: str | Path,
    cell_labels: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
) -> Path:
    """Images in a table: a labelled row per agent (say), a labelled column per query (say), an optional caption
    above each image (e.g. its score) and a title."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.7 * n_cols + 0.6, 1.8 * n_rows + 0.9), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(row):
                ax.axis("off")
                continue
            ax.imshow(row[j])
            if cell_labels is not None:
                ax.set_title(cell_labels[i][j], fontsize=7, pad=2)
            if j == 0:
                ax.set_ylabel(_wrap(row_labels[i], 16), fontsize=8)
            if i == n_rows - 1:
                ax.set_xlabel(_wrap(column_labels[j], 20), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def comparison_grid(results: dict[str, Sequence[Episode]], picks: Sequence[int], out: str | Path, **labels) -> Path:
    """Final images of several agents on the same (query, seed) episodes: a row per agent (named by the keys of
    ``results``), a column per picked episode (labelled with its query, or ``column_labels``), the reward above
    each image."""
    names = list(results)
    columns = labels.pop("column_labels", None) or [results[names[0]][i].query for i in picks]
    rows = [[results[n][i].final_image for i in picks] for n in names]
    scores = [[f"reward {results[n][i].reward:.2f}" for i in picks] for n in names]
    return image_table(rows, names, columns, out, cell_labels=scores, **labels)
