"""TRL ``GRPOTrainer`` on PromptLoop through ``environment_factory``: a small vision-language policy sees the previews.

Run: ``python examples/trl_grpo_environment.py``  (writes ``runs/trl_grpo_environment.json`` and ``.png``)
(``pip install -e .[trl]``; offline: the tokenizer, the processor and the tiny Qwen2.5-VL policy of
:mod:`promptloop_agents.policies.toy_policy` are built here with random weights; ``--curve curve.png`` draws the reward
curve; ``--warm_start_dir DIR`` saves the warm-started policy there, or reuses it;
``--server_url http://127.0.0.1:8000`` plays the episodes on a PromptLoop OpenEnv server,
``python -m promptloop_env.integrations.openenv --port 8000 --backbone toy-compose --reward toy-compose-soft
--max-concurrent-envs 40 --env-kwargs '{"num_inference_steps": 10, "num_refinements": 2, "preview":
"latent_rgb", "preview_size": 56}'``: TRL keeps one env, so one session, per rollout of a step (32), plus one.)

TRL drives multi-turn environments as *tool calls*: every public method of the environment object becomes a
tool, ``reset(**row)`` starts an episode and returns the content appended to the user turn, and ``get_reward()``
scores the rollout. Here the only tool is ``set_prompt(prompt)``: it steps a PromptLoop episode and returns the
next state as an image block (the x0 preview) and the text of
:class:`~promptloop_env.wrappers.FormatChatObservation`; ``reset`` shows the first preview the same way, so the
policy sees every preview in its chat. What TRL imposes: a chat template it
recognises verbatim and that renders images inside tool messages (TRL's own ``qwen3_vl.jinja``, used here with
a Qwen2.5-VL model, so the shipped warm-started toy policy, whose tokenizer and template differ, is not reused),
tool-call JSON rather than a plain prompt, the whole growing chat as the state, and a model that decides how many
calls it makes. The env, not the model, decides when an episode ends: ``get_reward`` runs an unfinished episode to
the end with the prompt in force; a rollout that never called the tool scores ``--no_call_reward``.

The world is ``toy-compose`` (GenEval-style scenes of several objects) with the ``toy-compose-soft`` reward (the
fraction of the query's constraints that hold) on its ``two_object`` and ``colors`` queries, the categories where
the wording of the prompt moves the reward most within a few minutes of CPU. The tool expands ``{query}`` in the
prompt to the user's request (:func:`expand`): a policy this small copies a query of a few words unreliably (it
named the wrong shapes in a first try, which the reward then mostly measured), so the macro lets it keep, decorate
or drop the request without copying it. A random-weight model never emits a tool call, so a format warm start
(``--sft_steps`` of teacher forcing on conversations, loss on the assistant turns) comes first: its prompts are
drawn uniformly from ``PROMPTS``, the rewrites of a careless prompt writer (the request kept, doubled or
decorated, or replaced by a generic scene), so the warm-started policy writes each of them about equally often.
GRPO then has to find, from the reward alone, which of them pay (their mean rewards, each written at both calls,
on 40 (query, seed) pairs: "{query}, large, bright" 0.70, "{query}, {query}" 0.62, "{query}" 0.55,
"a photo of {query}" 0.55, "a teal background" 0.32, "a white circle" 0.22). Each GRPO step plays
``--queries_per_step`` groups of ``--num_generations`` rollouts (a group shares its query and noise seed) and
makes ``--num_iterations`` clipped updates on them; rollouts are sampled at ``--temperature`` 0.7, at which the
warm-started policy keeps the tool-call format (at 1.0 about a fifth of the rollouts rambled to the length limit
without a call), and a rollout without a call scores -0.5, below every prompt. The dataset cycles over
``--steps_per_epoch`` steps of fixed (query, noise seed) rows, so the first and the last epoch play exactly the
same episodes and their difference is paired. Before and after GRPO, ``trainer.evaluate()`` plays
``--eval_generations`` rollouts on each of ``--eval_rows`` held-out rows (``--eval_prompts`` queries, seeds no
training row uses): the paired before/after difference is the clean measure, since the policy already learns
during the first epoch. The project's own GRPO loop (``promptloop_agents``) is the faster way to train (a Markov
state, no tool JSON).

Measured (default arguments, ``benchmarks/results/trl_grpo_environment.json`` and ``.png``; one CPU thread on the
shared 2-core machine, 15.0 minutes in all: a 55-second warm start, 11.5 minutes of GRPO, two held-out
evaluations of 1.3 minutes each; an earlier run of the same code took 13.3 minutes and gave the same figures to the
last digit). Held out, 64 rows x 4 rollouts: 0.565 [0.510, 0.620] before, 0.777 [0.707, 0.848] after,
paired difference **+0.212 [+0.149, +0.276]** (Student t 95%, n = 64 rows). The policy learned *which* prompt pays:
the share of held-out rollouts ending on "{query}, large, bright" went 0.08 -> 0.87, "a photo of {query}" 0.34 ->
0.02, "a teal background" 0.25 -> 0 and "a white circle" 0.15 -> 0; rollouts without a call were 0.8% and 1.2%, so
the -0.5 barely enters the means. Training reward per 8 steps (32 rows, 8 rollouts each): 0.559, 0.598, 0.605,
0.648, 0.675, 0.669; last 8 steps minus the first 8 on the same rows +0.110 [+0.024, +0.196] (n = 32). At
temperature 1.0 with one update per batch the rise was not measurable (the README section "Use it from your
trainer" has those runs).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import DependencyNotInstalled
from PIL import Image

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_agents.configs import EnvConfig
from promptloop_agents.policies.toy_policy import SPECIAL_TOKENS, ToyPolicySize, build_toy_model, build_toy_processor
from promptloop_env.cli import parse_config, with_defaults, write_json
from promptloop_env.prompts import resolve_prompts
from promptloop_env.stats import paired_difference, rounded, t_ci
from promptloop_env.wrappers import CHAT_USER_TEMPLATE, FormatChatObservation

# Prompts of the warm start ("{query}" is the episode's query): what a careless prompt writer does with a request.
PROMPTS = [
    "{query}",
    "{query}, {query}",
    "a photo of {query}",
    "{query}, large, bright",
    "a teal background",
    "a white circle",
]
QUERY_MACRO = "{query}"
INSTRUCTION = "Improve the image by calling set_prompt once per step until the image is finished.\n"
FINISHED = "The image is finished."
TOOL_TAGS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]


ENV_DEFAULTS = {
    "backbone": "toy-compose",
    "reward": "toy-compose-soft",
    "num_inference_steps": 10,
    "num_refinements": 2,  # set_prompt calls per episode
    "preview": "latent_rgb",
    "preview_size": 56,  # 4 image tokens per preview
}
"""This example's env (the flags of :class:`~promptloop_agents.configs.EnvConfig`)."""


@dataclass
class Args(with_defaults(EnvConfig, **ENV_DEFAULTS)):
    """The env's arguments with this example's defaults (:data:`ENV_DEFAULTS`), the query sets, the warm start,
    GRPO and the held-out evaluation."""

    prompts: str = field(default="toy-compose-train", metadata={"help": "query set of the training episodes"})
    eval_prompts: str = field(default="toy-compose-test", metadata={"help": "query set of the held-out evaluation"})
    categories: str | None = field(
        default="two_object,colors", metadata={"help": "toy-compose categories kept from the query set (None: all)"}
    )
    server_url: str | None = field(default=None, metadata={"help": "play the episodes on this OpenEnv server"})
    sft_steps: int = field(default=200, metadata={"help": "format warm-start steps (0 to skip)"})
    sft_batch_size: int = field(default=8, metadata={"help": "conversations per warm-start step"})
    sft_episodes: int = field(default=16, metadata={"help": "played episodes whose previews the warm start uses"})
    sft_learning_rate: float = field(default=3e-3, metadata={"help": "warm-start learning rate"})
    max_steps: int = field(default=48, metadata={"help": "GRPO steps (batches of rollouts)"})
    steps_per_epoch: int = field(default=8, metadata={"help": "GRPO steps before the (query, seed) rows repeat"})
    num_generations: int = field(default=8, metadata={"help": "GRPO group size (one row: same query and noise)"})
    queries_per_step: int = field(default=4, metadata={"help": "groups per GRPO step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "GRPO learning rate"})
    beta: float = field(default=0.04, metadata={"help": "KL coefficient to the warm-started policy"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature of the rollouts"})
    num_iterations: int = field(default=2, metadata={"help": "policy updates per batch of rollouts (clipped ratio)"})
    no_call_reward: float = field(default=-0.5, metadata={"help": "reward of a rollout that never calls set_prompt"})
    eval_rows: int = field(default=64, metadata={"help": "held-out (query, seed) rows scored before and after GRPO"})
    eval_generations: int = field(default=4, metadata={"help": "sampled rollouts per held-out row"})
    seed: int = field(default=0, metadata={"help": "seed of the model init, the data and training"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads"})
    warm_start_dir: str | None = field(
        default=None, metadata={"help": "save the warm-started policy here, or reuse the one saved here"}
    )
    output: str | None = field(
        default="runs/trl_grpo_environment.json",
        metadata={"help": "write the rewards and their statistics as JSON here ('' = none)"},
    )
    curve: str | None = field(
        default="runs/trl_grpo_environment.png", metadata={"help": "draw the reward curve to this png ('' = none)"}
    )


def episode_queries(args: Args, prompts: str | None = None) -> list[str]:
    """The queries of ``prompts`` (default: the training set ``args.prompts``), restricted to ``args.categories``."""
    queries = list(resolve_prompts(prompts or args.prompts, None))
    if args.categories is None:
        return queries
    from promptloop_env.toy.compose_spec import parse

    wanted = set(args.categories.split(","))
    return [q for q in queries if parse(q).category in wanted]


def make_env(args: Args) -> gym.Env:
    """The PromptLoop env of the episodes: local, or a session of the OpenEnv server at ``args.server_url``."""
    if args.server_url is not None:
        from promptloop_env.integrations.openenv import RemotePromptLoopEnv

        return RemotePromptLoopEnv(args.server_url)
    return gym.make("PromptLoop-v0", prompts=episode_queries(args), **args.env_kwargs())


class PromptLoopToolEnv:
    """One PromptLoop episode behind TRL's environment interface: ``reset``, tool ``set_prompt``, ``get_reward``.

    Args:
        args: the example's arguments (world, episode length, preview).
        log: if given, every :meth:`get_reward` appends ``{"row", "reward", "calls", "prompt", "query"}`` to it (the
            prompt last in force: the query if the policy never called the tool).
    """

    def __init__(self, args: Args, log: list[dict] | None = None) -> None:
        self.env = FormatChatObservation(make_env(args), system_prompt=None)
        self.no_call_reward = args.no_call_reward
        self.log = log
        self.reward: float | None = None
        self.prompt = ""
        self.calls = 0
        self.row: int | None = None

    def reset(self, seed: int, query: str | None = None, row: int | None = None, **columns) -> list[dict]:
        obs, info = self.env.reset(seed=int(seed), options=None if query is None else {"query": query})
        self.reward, self.prompt, self.calls, self.row = None, info["prompt"], 0, row
        self.query = info["prompt"]  # right after reset, the prompt in force is the query
        return self._content(obs)

    def set_prompt(self, prompt: str) -> list[dict]:
        """Set the prompt of the image model, used from now until your next call.

        Args:
            prompt: The complete prompt for the image model; {query} in it stands for the user's request.

        Returns:
            The image model's current guess of the final image and the state, or a note that it is finished.
        """
        if self.reward is not None:
            return [{"type": "text", "text": FINISHED}]
        self.prompt = expand(str(prompt), self.query)
        obs, reward, terminated, _, _ = self.env.step(self.prompt)
        self.calls += 1
        if terminated:
            self.reward = float(reward)
            return [{"type": "text", "text": FINISHED}]
        return self._content(obs)

    def get_reward(self) -> float:
        """The episode's reward; an unfinished episode is run to the end with the prompt in force."""
        if self.calls == 0:
            reward = self.no_call_reward
        else:
            calls = self.calls
            while self.reward is None:
                self.set_prompt(self.prompt)
            reward, self.calls = self.reward, calls
        if self.log is not None:
            self.log.append(
                {
                    "row": self.row,
                    "reward": float(reward),
                    "calls": self.calls,
                    "prompt": self.prompt,
                    "query": self.query,
                }
            )
        return reward

    @staticmethod
    def _content(obs: dict) -> list[dict]:
        return tool_content(obs)


def expand(prompt: str, query: str) -> str:
    """``prompt`` with :data:`QUERY_MACRO` replaced by ``query``: the policy need not copy the query to keep it."""
    return prompt.replace(QUERY_MACRO, query)


def tool_content(obs: dict) -> list[dict]:
    """A :class:`FormatChatObservation` observation as TRL content blocks: the preview, then the state text."""
    return [
        {"type": "image", "image": Image.fromarray(obs["image"])},
        {"type": "text", "text": obs["messages"][-1]["content"]},
    ]


def build_processor(args: Args):
    """A Qwen2.5-VL processor with a byte-level BPE tokenizer trained here and TRL's ``qwen3_vl.jinja`` template."""
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_vl.jinja").read_text()
    words = " ".join(PROMPTS + [INSTRUCTION, FINISHED, PromptLoopToolEnv.set_prompt.__doc__])
    corpus = [template, words, json.dumps({"name": "set_prompt", "arguments": {"prompt": PROMPTS[1]}})]
    corpus += [CHAT_USER_TEMPLATE]
    if args.server_url is None:
        corpus += episode_queries(args)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus * 10, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    tokenizer.add_tokens(TOOL_TAGS)
    tokenizer.chat_template = template
    processor = build_toy_processor(tokenizer, image_size=args.preview_size)
    processor.chat_template = template
    return processor


def play_previews(args: Args, queries: list[str], rng: np.random.Generator) -> list[list[dict]]:
    """The raw observations before each call of ``args.sft_episodes`` episodes played with prompts of ``PROMPTS``."""
    env = make_env(args)
    episodes = []
    for i in range(args.sft_episodes):
        query = queries[int(rng.integers(len(queries)))]
        obs, _ = env.reset(seed=10**6 + i, options={"query": query})
        seen, terminated = [obs], False
        while not terminated:
            obs, _, terminated, _, _ = env.step(expand(PROMPTS[int(rng.integers(len(PROMPTS)))], query))
            seen.append(obs)
        episodes.append(seen[:-1])
    env.close()
    return episodes


def warm_start_conversation(
    fmt: FormatChatObservation, previews: list[dict], query: str, rng: np.random.Generator
) -> tuple[list[dict], list]:
    """The chat TRL builds for one episode whose calls write prompts drawn from ``PROMPTS``, and its images.

    The previews and progress are those of a played episode (``previews``), the query and the prompts in force
    are this conversation's: the warm start teaches the format and a uniform choice among ``PROMPTS``, for which
    the pairing of previews and queries does not matter, and re-pairing makes many conversations out of a few
    played episodes.
    """

    def content(obs: dict, prompt: str) -> list[dict]:
        return tool_content(fmt.observation({**obs, "query": query, "prompt": prompt}))

    first = content(previews[0], query)
    messages = [{"role": "user", "content": [{"type": "text", "text": INSTRUCTION}, *first]}]
    images = [first[0]["image"]]
    for k in range(len(previews)):
        prompt = PROMPTS[int(rng.integers(len(PROMPTS)))]
        call = {"type": "function", "function": {"name": "set_prompt", "arguments": {"prompt": prompt}}}
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        if k + 1 < len(previews):
            answer = content(previews[k + 1], expand(prompt, query))
        else:
            answer = [{"type": "text", "text": FINISHED}]
        messages.append({"role": "tool", "content": answer})
        images += [part["image"] for part in answer if part["type"] == "image"]
    messages.append({"role": "assistant", "content": "Done."})
    return messages, images


def assistant_labels(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """``input_ids`` with every token outside the assistant turns (header excluded, ``<|im_end|>`` included) -100."""
    start, end = tokenizer.convert_tokens_to_ids("<|im_start|>"), tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = tokenizer.encode("assistant\n", add_special_tokens=False)
    labels = torch.full_like(input_ids, -100)
    for b, ids in enumerate(input_ids.tolist()):
        i = 0
        while i < len(ids):
            if ids[i] == start and ids[i + 1 : i + 1 + len(header)] == header:
                i += 1 + len(header)
                while i < len(ids):
                    labels[b, i] = ids[i]
                    if ids[i] == end:
                        break
                    i += 1
            i += 1
    return labels


def warm_start(model, processor, args: Args, queries: list[str]) -> dict:
    """Teacher-force conversations whose calls write prompts drawn uniformly from ``PROMPTS``: the tool-call format.

    The loss is on the assistant turns only.
    """
    if args.sft_steps <= 0:
        return {"steps": 0}
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    played = play_previews(args, queries, rng)
    fmt = FormatChatObservation(make_env(args), system_prompt=None)
    tools = [PromptLoopToolEnv.set_prompt]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.sft_learning_rate)
    model.train()
    for _ in range(args.sft_steps):
        texts, images = [], []
        for _ in range(args.sft_batch_size):
            query = queries[int(rng.integers(len(queries)))]
            messages, conversation_images = warm_start_conversation(
                fmt, played[int(rng.integers(len(played)))], query, rng
            )
            texts.append(processor.apply_chat_template(messages, tools=tools, tokenize=False))
            images += conversation_images
        inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
        loss = model(**inputs, labels=assistant_labels(inputs["input_ids"], processor.tokenizer)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    seconds = time.perf_counter() - start
    print(f"format warm start: {args.sft_steps} steps of {args.sft_batch_size} conversations, loss {loss.item():.3f}")
    return {"steps": args.sft_steps, "episodes_played": len(played), "final_loss": loss.item(), "seconds": seconds}


def structural_tokens(tokenizer) -> list[int]:
    """Ids of the chat's structural tokens a rollout must not generate (all but ``<|im_start|>``/``<|im_end|>``)."""
    allowed = {"<|im_start|>", "<|im_end|>"}
    return [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS if t not in allowed]


def training_rows(args: Args, queries: list[str]) -> list[dict]:
    """One row per group, ``steps_per_epoch`` steps of distinct (query, seed) rows repeated up to ``max_steps``."""
    rng = np.random.default_rng(args.seed)
    per_epoch = args.steps_per_epoch * args.queries_per_step
    epoch = [{"row": i, "seed": i, "query": queries[int(rng.integers(len(queries)))]} for i in range(per_epoch)]
    return [epoch[i % per_epoch] for i in range(args.max_steps * args.queries_per_step)]


def held_out_rows(args: Args) -> list[dict]:
    """``args.eval_rows`` (query, seed) rows of the evaluation: held-out queries and seeds no training row uses."""
    queries = episode_queries(args, args.eval_prompts)
    order = np.random.default_rng(args.seed).permutation(len(queries))
    first = 10**5  # training rows and seeds count from 0, warm-start episodes from 10**6
    return [
        {"row": first + i, "seed": first + i, "query": queries[order[i % len(queries)]]} for i in range(args.eval_rows)
    ]


def evaluate(trainer, log: list[dict]) -> list[dict]:
    """The rewarded rollouts of one pass of ``trainer.evaluate()`` over the held-out rows, taken out of ``log``."""
    start = len(log)
    trainer.evaluate()
    entries = log[start:]
    del log[start:]
    return entries


def before_after(before: list[dict], after: list[dict]) -> dict:
    """The held-out scores of the warm-started and the trained policy: row means, paired difference, prompt shares."""

    def row_means(entries: list[dict]) -> dict[int, float]:
        rewards: dict[int, list[float]] = {}
        for entry in entries:
            rewards.setdefault(entry["row"], []).append(entry["reward"])
        return {row: float(np.mean(values)) for row, values in rewards.items()}

    first, last = row_means(before), row_means(after)
    rows = sorted(set(first) & set(last))
    return {
        "before": rounded(t_ci([first[r] for r in rows])),
        "after": rounded(t_ci([last[r] for r in rows])),
        "after_minus_before": rounded(paired_difference([last[r] for r in rows], [first[r] for r in rows])),
        "rollouts": [len(before), len(after)],
        "calls_per_rollout": [round(float(np.mean([e["calls"] for e in es])), 3) for es in (before, after)],
        "prompt_shares": [prompt_shares(before), prompt_shares(after)],
    }


def summarise(log: list[dict], args: Args) -> dict:
    """Per-step means, block means of ``steps_per_epoch`` steps, and the last epoch minus the first, paired by row."""
    per_step = args.num_generations * args.queries_per_step
    if len(log) != args.max_steps * per_step:
        raise RuntimeError(f"Expected {args.max_steps * per_step} rewarded rollouts, got {len(log)}.")
    steps = [log[i : i + per_step] for i in range(0, len(log), per_step)]
    step_means = [float(np.mean([e["reward"] for e in step])) for step in steps]
    block = args.steps_per_epoch
    blocks = [steps[i : i + block] for i in range(0, len(steps), block)]

    def by_row(block_steps: list[list[dict]]) -> dict[int, float]:
        rewards: dict[int, list[float]] = {}
        for step in block_steps:
            for entry in step:
                rewards.setdefault(entry["row"], []).append(entry["reward"])
        return {row: float(np.mean(values)) for row, values in sorted(rewards.items())}

    first, last = by_row(blocks[0]), by_row(blocks[-1])
    rows = sorted(set(first) & set(last))
    summary = {
        "step_means": [round(m, 4) for m in step_means],
        "block_means": [round(float(np.mean(step_means[i : i + block])), 4) for i in range(0, len(steps), block)],
        "calls_per_rollout_by_block": [
            round(float(np.mean([e["calls"] for step in b for e in step])), 3) for b in blocks
        ],
        "prompt_shares_by_block": [prompt_shares([e for step in b for e in step]) for b in blocks],
        "first_block": rounded(t_ci([first[r] for r in rows])),
        "last_block": rounded(t_ci([last[r] for r in rows])),
    }
    if len(blocks) > 1:
        summary["last_minus_first"] = rounded(paired_difference([last[r] for r in rows], [first[r] for r in rows]))
    return summary


def prompt_shares(entries: list[dict]) -> dict[str, float]:
    """Fraction of ``entries`` whose last prompt is each template of ``PROMPTS`` ("no call", "other" otherwise)."""
    counts = dict.fromkeys([*PROMPTS, "no call", "other"], 0)
    for entry in entries:
        written = [t for t in PROMPTS if expand(t, entry["query"]) == entry["prompt"]]
        counts["no call" if entry["calls"] == 0 else written[0] if written else "other"] += 1
    return {name: round(n / max(1, len(entries)), 3) for name, n in counts.items()}


def draw_curve(step_means: list[float], path: str, window: int) -> None:
    """The per-step mean reward and its running mean, through the package's plotting helper."""
    from promptloop_agents.evaluation.plots import reward_curve

    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "metrics.jsonl"
        lines = [json.dumps({"iteration": i + 1, "reward_mean": m}) for i, m in enumerate(step_means)]
        metrics.write_text("\n".join(lines) + "\n")
        reward_curve(metrics, path, window=window)


def warm_started_policy(processor, args: Args, queries: list[str], folder: Path):
    """The policy after the warm start, saved (safetensors) to ``folder``, or reused if a policy is saved there.

    Saved either way: with ``beta > 0`` TRL loads its reference model from the policy's ``_name_or_path``.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration

    if (folder / "config.json").exists():
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder).eval()
        return model, json.loads((folder / "warm_start.json").read_text())
    size = ToyPolicySize(hidden_size=64, num_layers=2, num_heads=2)
    model = build_toy_model(processor.tokenizer, size, args.seed)
    sft = warm_start(model, processor, args, queries)
    model.save_pretrained(folder)
    (folder / "warm_start.json").write_text(json.dumps(sft) + "\n")
    model.config._name_or_path = str(folder)
    return model, sft


def main(args: Args) -> dict:
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as err:
        raise DependencyNotInstalled("This example needs trl and datasets: pip install -e .[trl]") from err

    run_start = time.perf_counter()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.set_num_threads(args.threads)
    queries = episode_queries(args)
    processor = build_processor(args)

    # TRL repeats each row num_generations times: a group shares its query and its noise seed.
    def dataset(rows: list[dict]) -> Dataset:
        prompts = [[{"role": "user", "content": INSTRUCTION}] for _ in rows]
        return Dataset.from_dict({"prompt": prompts, **{key: [row[key] for row in rows] for key in rows[0]}})

    log: list[dict] = []
    with tempfile.TemporaryDirectory() as output_dir:
        folder = Path(args.warm_start_dir or Path(output_dir) / "warm_start")
        model, sft = warm_started_policy(processor, args, queries, folder)
        config = GRPOConfig(
            output_dir=output_dir,
            use_cpu=True,
            max_steps=args.max_steps * args.num_iterations,  # TRL counts updates: num_iterations per batch
            per_device_train_batch_size=args.num_generations * args.queries_per_step,
            num_generations=args.num_generations,
            per_device_eval_batch_size=args.eval_generations * 8,
            num_generations_eval=args.eval_generations,
            max_completion_length=320,  # two calls and their answers take about 200 tokens
            max_tool_calling_iterations=args.num_refinements + 1,
            learning_rate=args.learning_rate,
            beta=args.beta,
            num_iterations=args.num_iterations,
            temperature=args.temperature,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            seed=args.seed,
            shuffle_dataset=False,
            # Image and padding tokens the policy must never write (an image token breaks the loss forward).
            generation_kwargs={"suppress_tokens": structural_tokens(processor.tokenizer)},
        )
        trainer = GRPOTrainer(
            model=model,
            args=config,
            train_dataset=dataset(training_rows(args, queries)),
            eval_dataset=dataset(held_out_rows(args)) if args.eval_rows > 0 else None,
            processing_class=processor,
            environment_factory=lambda: PromptLoopToolEnv(args, log=log),
        )
        before = evaluate(trainer, log) if args.eval_rows > 0 else []
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        after = evaluate(trainer, log) if args.eval_rows > 0 else []
    summary = summarise(log, args)
    if args.eval_rows > 0:
        summary["held_out"] = before_after(before, after)
    print("mean reward per step:", " ".join(f"{m:.3f}" for m in summary["step_means"]))
    print(f"per {args.steps_per_epoch} steps:", summary["block_means"])
    if "last_minus_first" in summary:
        d = summary["last_minus_first"]
        print(
            f"last minus first {args.steps_per_epoch} steps, paired by row: {d['mean']:+.3f} "
            f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
        )
    if "held_out" in summary:
        h = summary["held_out"]
        d = h["after_minus_before"]
        print(
            f"held out, {d['n']} rows x {args.eval_generations} rollouts: {h['before']['mean']:.3f} before, "
            f"{h['after']['mean']:.3f} after, {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
        )
        print("prompt shares before:", h["prompt_shares"][0])
        print("prompt shares after: ", h["prompt_shares"][1])
    result = {
        **summary,
        "grpo_seconds": round(seconds, 1),
        "seconds": round(time.perf_counter() - run_start, 1),
        "warm_start": sft,
        "args": asdict(args),
    }
    if args.curve:
        Path(args.curve).parent.mkdir(parents=True, exist_ok=True)
        draw_curve(summary["step_means"], args.curve, window=args.steps_per_epoch)
    if args.output:
        write_json(args.output, result, indent=2)
    return result


if __name__ == "__main__":
    main(parse_config(Args, description=__doc__.split("\n\n")[0]))
