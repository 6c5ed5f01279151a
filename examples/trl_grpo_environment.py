"""TRL ``GRPOTrainer`` on PromptLoop through ``environment_factory``: the policy acts by calling a tool.

Run: ``PYTHONPATH=. python examples/trl_grpo_environment.py --backbone tiny --sft_steps 300 --max_steps 8``
(``pip install -e .[trl]``; offline: the tokenizer and the tiny Qwen3 policy are built here with random weights).

TRL drives multi-turn environments as *tool calls*: every public method of the environment object becomes a
tool, ``reset(**row)`` starts an episode and returns text appended to the user turn, and ``get_reward()``
scores the finished rollout. Here the only tool is ``set_prompt(prompt)``: it steps a PromptLoop episode
and returns the next state as the text of :class:`~promptloop_env.wrappers.FormatChatObservation`. What TRL
imposes (``research/trl-grpo-spike.md``): a chat template it recognises (TRL's own ``qwen3.jinja``), tool-call
JSON rather than a plain prompt, the whole growing chat as the state, and a model that decides how many calls
it makes (an unfinished episode scores ``--unfinished_reward``). A random-weight model never emits a tool
call, so a short format warm start (``--sft_steps`` of teacher forcing on example conversations) comes first.
This example is text-only; a vision-language policy would return the preview as an image block from the tool
and use ``qwen3_vl.jinja``. The project's own GRPO loop (``promptloop_agents``) is the faster way to train.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import DependencyNotInstalled

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_env.wrappers import FormatChatObservation

MODIFIERS = ["", "bright colours", "high contrast", "dark background", "detailed", "minimal, plain"]
QUERIES = ["a red circle on the left", "a small blue square", "a green triangle", "a yellow star at the top"]
INSTRUCTION = "Improve the image by calling set_prompt once per step until the image is finished.\n\n"
FINISHED = "The image is finished."


@dataclass
class Args:
    backbone: str = field(default="tiny", metadata={"help": "backbone name (tiny, toy-shapes, ...)"})
    reward: str = field(
        default="jpeg-incompressibility", metadata={"help": "reward name (toy-fidelity on toy-shapes)"}
    )
    num_inference_steps: int = field(default=8, metadata={"help": "denoising steps per episode"})
    num_refinements: int = field(default=2, metadata={"help": "set_prompt calls per episode"})
    sft_steps: int = field(default=300, metadata={"help": "format warm-start steps (0 to skip)"})
    max_steps: int = field(default=8, metadata={"help": "GRPO steps"})
    num_generations: int = field(default=4, metadata={"help": "GRPO group size"})
    learning_rate: float = field(default=1e-4, metadata={"help": "GRPO learning rate"})
    unfinished_reward: float = field(default=-1.0, metadata={"help": "reward of a rollout that stops calling early"})
    seed: int = field(default=0, metadata={"help": "seed of the model init, the data and training"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads"})


class PromptLoopToolEnv:
    """One PromptLoop episode behind TRL's environment interface (``reset``, tools, ``get_reward``)."""

    def __init__(self, args: Args) -> None:
        env = gym.make(
            "PromptLoop-v0",
            backbone=args.backbone,
            reward=args.reward,
            num_inference_steps=args.num_inference_steps,
            num_refinements=args.num_refinements,
            preview="none",
            preview_size=8,
        )
        self.env = FormatChatObservation(env, system_prompt=None)
        self.unfinished_reward = args.unfinished_reward
        self.reward: float | None = None

    def reset(self, query: str, seed: int, **row) -> str:
        obs, _ = self.env.reset(seed=int(seed), options={"query": query})
        self.reward = None
        return obs["messages"][-1]["content"]

    def set_prompt(self, prompt: str) -> str:
        """Set the prompt of the image model, used from now until your next call.

        Args:
            prompt: The complete prompt for the image model.

        Returns:
            The new state of the image, or a note that it is finished.
        """
        if self.reward is not None:
            return FINISHED
        obs, reward, terminated, _, _ = self.env.step(str(prompt))
        if terminated:
            self.reward = float(reward)
            return FINISHED
        return obs["messages"][-1]["content"]

    def get_reward(self) -> float:
        return self.unfinished_reward if self.reward is None else self.reward


def build_tokenizer():
    """A byte-level BPE tokenizer with Qwen's special tokens and TRL's ``qwen3.jinja`` chat template."""
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tags = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]
    template = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()
    corpus = [*QUERIES, *MODIFIERS, INSTRUCTION, FINISHED, template, PromptLoopToolEnv.set_prompt.__doc__]
    corpus += [json.dumps({"name": "set_prompt", "arguments": {"prompt": q}}) for q in QUERIES]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus * 10, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    tokenizer.add_tokens(tags)
    tokenizer.chat_template = template
    return tokenizer


def build_policy(tokenizer, seed: int):
    """A randomly initialised two-layer Qwen3 causal LM (about 0.2M parameters)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def warm_start(model, tokenizer, env: PromptLoopToolEnv, args: Args) -> None:
    """Teacher-force whole conversations played in the env (query plus a random modifier per call): the format."""
    if args.sft_steps <= 0:
        return
    rng = np.random.default_rng(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(args.sft_steps):
        query = QUERIES[step % len(QUERIES)]
        messages = [{"role": "user", "content": INSTRUCTION + env.reset(query=query, seed=step)}]
        for _ in range(args.num_refinements):
            modifier = MODIFIERS[int(rng.integers(len(MODIFIERS)))]
            prompt = f"{query}, {modifier}" if modifier else query
            call = {"type": "function", "function": {"name": "set_prompt", "arguments": {"prompt": prompt}}}
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            messages.append({"role": "tool", "content": env.set_prompt(prompt)})
        messages.append({"role": "assistant", "content": "Done."})
        text = tokenizer.apply_chat_template(messages, tools=[env.set_prompt], tokenize=False)
        ids = tokenizer(text, return_tensors="pt").input_ids
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    print(f"format warm start: {args.sft_steps} steps, final loss {loss.item():.3f}")


def main(args: Args) -> list[dict]:
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as err:
        raise DependencyNotInstalled("This example needs trl and datasets: pip install -e .[trl]") from err

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer()
    model = build_policy(tokenizer, args.seed)
    warm_start(model, tokenizer, PromptLoopToolEnv(args), args)
    rows = args.max_steps * args.num_generations
    dataset = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": INSTRUCTION}] for _ in range(rows)],
            "query": [QUERIES[i % len(QUERIES)] for i in range(rows)],
            "seed": list(range(rows)),
        }
    )
    with tempfile.TemporaryDirectory() as output_dir:
        config = GRPOConfig(
            output_dir=output_dir,
            use_cpu=True,
            max_steps=args.max_steps,
            per_device_train_batch_size=args.num_generations,
            num_generations=args.num_generations,
            max_completion_length=256,
            max_tool_calling_iterations=args.num_refinements + 1,
            learning_rate=args.learning_rate,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            seed=args.seed,
        )
        trainer = GRPOTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            environment_factory=lambda: PromptLoopToolEnv(args),
        )
        trainer.train()
    logs = [entry for entry in trainer.state.log_history if "reward" in entry]
    for entry in logs:
        print(f"step {entry.get('step')}: reward {entry['reward']:.3f}")
    return logs


if __name__ == "__main__":
    from transformers import HfArgumentParser

    main(HfArgumentParser(Args).parse_args_into_dataclasses()[0])
