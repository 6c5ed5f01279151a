"""``PromptLoop-v0`` served as an OpenEnv environment (``openenv-core``), and its client.

Trainers on other machines (TRL, verl, rLLM, our own) reach the env through OpenEnv's WebSocket sessions; the
diffusion and reward models stay on the server's machine. One session is one env: its own episode, RNG and
prompt history, isolated from the other sessions (the backbone's weights are shared, and the sessions' model
calls run one at a time; the vector form is how one session batches N episodes).

Server (``python -m promptloop_env.integrations.openenv --port 8000 --backbone toy-shapes``, or in code)::

    app = create_promptloop_app(backbone="toy-shapes", reward="toy-fidelity")          # PromptLoop-v0
    app = create_promptloop_app(num_envs=8, backbone="toy-shapes")                       # its vector form

Client (OpenEnv's ``EnvClient``, async, or ``.sync()``)::

    with PromptLoopClient(base_url="http://127.0.0.1:8000").sync() as client:
        result = client.reset(seed=0, query="a red circle on the left")
        result = client.step(PromptLoopAction(prompt="a large red circle, left side"))
        image = decode_image(result.observation.image)                                   # uint8 [H, W, 3]

What travels: the observation's fields (``image`` as a base64 PNG, lossless, so images are bit-exact; ``query``,
``prompt``, ``segment``, ``timestep``), the reward and ``done`` (OpenEnv's), and the env's ``info`` (every key,
with ``final_image`` as a base64 PNG) including ``noise_seed``, the replay guarantee's seed. ``reset`` takes
``seed``, ``query`` and ``noise_seed``. A bad request (an unknown reset key, a non-str prompt, a step before
reset or after the end) is answered with an error message and the session stays usable; the server never
crashes on one. ``RemotePromptLoopEnv`` puts a Gymnasium API over the client.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled
from PIL import Image
from pydantic import Field

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)

try:
    from openenv.core import EnvClient
    from openenv.core.client_types import StepResult
    from openenv.core.env_server.http_server import create_app
    from openenv.core.env_server.interfaces import Environment
    from openenv.core.env_server.types import Action, Observation, State
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise DependencyNotInstalled(
        "promptloop_env.integrations.openenv needs openenv-core: pip install promptloop[openenv]"
    ) from err

# Sessions share the backbone (its weights and prompt-embedding cache): their model calls take turns.
_MODEL_LOCK = threading.Lock()


def encode_image(image: np.ndarray) -> str:
    """A uint8 ``[H, W, 3]`` image as a base64 PNG (lossless).

    >>> image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    >>> bool((decode_image(encode_image(image)) == image).all())
    True
    """
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(data: str) -> np.ndarray:
    """The uint8 ``[H, W, 3]`` image of :func:`encode_image`'s base64 PNG."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def to_json(value: Any) -> Any:
    """An info value as JSON: numpy scalars as numbers, images (uint8 ``[H, W, 3]``) as base64 PNGs."""
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint8 and value.ndim == 3 and value.shape[-1] == 3:
            return encode_image(value)
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


class PromptLoopAction(Action):
    """The agent's action: the complete prompt in force from now until the next action."""

    prompt: str = Field(..., description="The complete prompt (not an edit) for the rest of the sampling run.")


class PromptLoopObservation(Observation):
    """``PromptLoop-v0``'s observation, reward and ``done``, with the env's ``info``."""

    image: str = Field("", description="The x0 preview as a base64 PNG; decode_image() gives uint8 [H, W, 3].")
    query: str = Field("", description="The user's original query.")
    prompt: str = Field("", description="The prompt now in force.")
    segment: int = Field(0, description="How many actions have been taken.")
    timestep: float = Field(0.0, description="Fraction of the denoising done, in [0, 1].")
    info: dict[str, Any] = Field(default_factory=dict, description="The env's info (final_image as base64 PNG).")


class PromptLoopVectorAction(Action):
    """One prompt per sub-env of the vector form (ignored for a sub-env that is being autoreset)."""

    prompts: list[str] = Field(..., description="num_envs complete prompts.")


class PromptLoopVectorObservation(Observation):
    """The vector form's batched observation, one entry per sub-env; ``reward`` is their sum."""

    images: list[str] = Field(default_factory=list, description="Previews as base64 PNGs.")
    queries: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)
    segments: list[int] = Field(default_factory=list)
    timesteps: list[float] = Field(default_factory=list)
    rewards: list[float] = Field(default_factory=list)
    terminated: list[bool] = Field(default_factory=list)
    infos: list[dict[str, Any]] = Field(default_factory=list, description="Each sub-env's info (as in a single env).")


class PromptLoopState(State):
    """The session's episode: OpenEnv's ``episode_id`` and ``step_count``, and how it was seeded."""

    seed: int | None = None
    query: str | list[str] | None = None
    noise_seed: int | list[int] | None = None


def _check_reset_kwargs(kwargs: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown reset arguments {unknown}; valid: {', '.join(allowed)}.")
    seed = kwargs.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or null; got {seed!r}.")


ActT = TypeVar("ActT", bound=Action)
ObsT = TypeVar("ObsT", bound=Observation)


class _SessionEnvironment(Environment[ActT, ObsT, PromptLoopState]):
    """A session's Gymnasium env (single or vector, built by ``make`` under the model lock) and its state."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, make: Callable[[], Any]) -> None:
        super().__init__()
        with _MODEL_LOCK:
            self.env = make()
        self._state = PromptLoopState()

    @property
    def state(self) -> PromptLoopState:
        return self._state

    def close(self) -> None:
        self.env.close()


class PromptLoopEnvironment(_SessionEnvironment[PromptLoopAction, PromptLoopObservation]):
    """One ``PromptLoop-v0`` env behind OpenEnv's ``Environment`` interface (one per session).

    Args:
        **env_kwargs: the arguments of ``PromptLoop-v0`` (``backbone``, ``reward``, ``prompts``, ...).
    """

    def __init__(self, **env_kwargs: Any) -> None:
        # No passive env checker: its first-call bookkeeping breaks for good after a reset that raised (a bad
        # request), and the env passes gymnasium's check_env in its own tests.
        super().__init__(partial(gym.make, "PromptLoop-v0", disable_env_checker=True, **env_kwargs))

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> PromptLoopObservation:
        """Start an episode; ``kwargs``: ``query`` and ``noise_seed`` (the env's reset options)."""
        _check_reset_kwargs({"seed": seed, **kwargs}, ("seed", "query", "noise_seed"))
        options = {key: kwargs[key] for key in ("query", "noise_seed") if kwargs.get(key) is not None}
        with _MODEL_LOCK:
            obs, info = self.env.reset(seed=seed, options=options)
        self._state = PromptLoopState(
            episode_id=episode_id, step_count=0, seed=seed, query=info["query"], noise_seed=info["noise_seed"]
        )
        return self._observation(obs, 0.0, False, info)

    def step(self, action: PromptLoopAction, timeout_s: float | None = None, **kwargs: Any) -> PromptLoopObservation:
        """Apply the prompt and denoise to the next refinement point (the env's ``step``)."""
        with _MODEL_LOCK:
            obs, reward, terminated, truncated, info = self.env.step(action.prompt)
        self._state.step_count += 1
        return self._observation(obs, reward, terminated or truncated, info)

    @staticmethod
    def _observation(obs: dict[str, Any], reward: float, done: bool, info: dict[str, Any]) -> PromptLoopObservation:
        return PromptLoopObservation(
            image=encode_image(obs["image"]),
            query=obs["query"],
            prompt=obs["prompt"],
            segment=int(obs["segment"]),
            timestep=float(obs["timestep"][0]),
            info=to_json(info),
            reward=float(reward),
            done=bool(done),
        )


class PromptLoopVectorEnvironment(_SessionEnvironment[PromptLoopVectorAction, PromptLoopVectorObservation]):
    """``PromptLoop-v0``'s vector form (one batched model call per step for ``num_envs`` episodes) for OpenEnv.

    ``reset`` takes ``seed`` (sub-env ``i`` gets ``seed + i``), ``query`` and ``noise_seed`` (one value or one
    per sub-env) and ``reset_mask`` (a list of bools); autoreset is Gymnasium's ``NEXT_STEP`` unless
    ``autoreset_mode`` says otherwise.

    Args:
        num_envs: episodes stepped together.
        **env_kwargs: the arguments of ``PromptLoop-v0`` and ``autoreset_mode``.
    """

    def __init__(self, num_envs: int = 2, **env_kwargs: Any) -> None:
        from gymnasium.wrappers.vector import DictInfoToList

        def make() -> Any:
            envs = gym.make_vec(
                "PromptLoop-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs
            )
            return DictInfoToList(envs)

        super().__init__(make)

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> PromptLoopVectorObservation:
        """Start episodes in every sub-env (or those of ``reset_mask``)."""
        _check_reset_kwargs({"seed": seed, **kwargs}, ("seed", "query", "noise_seed", "reset_mask"))
        options = {key: value for key, value in kwargs.items() if value is not None}
        if "reset_mask" in options:
            options["reset_mask"] = np.asarray(options["reset_mask"], dtype=np.bool_)
        with _MODEL_LOCK:
            obs, infos = self.env.reset(seed=seed, options=options)
        self._state = PromptLoopState(
            episode_id=episode_id,
            step_count=0,
            seed=seed,
            query=[info.get("query") for info in infos],
            noise_seed=[info.get("noise_seed") for info in infos],
        )
        zeros = np.zeros(self.env.num_envs)
        return self._observation(obs, zeros, zeros.astype(bool), infos)

    def step(
        self, action: PromptLoopVectorAction, timeout_s: float | None = None, **kwargs: Any
    ) -> PromptLoopVectorObservation:
        """One prompt per sub-env; see ``PromptLoopVectorEnv.step``."""
        with _MODEL_LOCK:
            obs, rewards, terminated, truncated, infos = self.env.step(list(action.prompts))
        self._state.step_count += 1
        return self._observation(obs, rewards, np.logical_or(terminated, truncated), infos)

    @staticmethod
    def _observation(
        obs: dict[str, Any], rewards: np.ndarray, terminated: np.ndarray, infos: list[dict]
    ) -> PromptLoopVectorObservation:
        return PromptLoopVectorObservation(
            images=[encode_image(image) for image in obs["image"]],
            queries=list(obs["query"]),
            prompts=list(obs["prompt"]),
            segments=[int(s) for s in obs["segment"]],
            timesteps=[float(t[0]) for t in obs["timestep"]],
            rewards=[float(r) for r in rewards],
            terminated=[bool(t) for t in terminated],
            infos=[to_json(info) for info in infos],
            reward=float(np.sum(rewards)),
            done=bool(np.all(terminated)),
        )


def create_promptloop_app(num_envs: int | None = None, max_concurrent_envs: int = 4, **env_kwargs: Any) -> Any:
    """The FastAPI app that serves ``PromptLoop-v0`` (or its vector form) with OpenEnv's routes.

    Sessions are OpenEnv's WebSocket sessions (``/ws``), one env each, at most ``max_concurrent_envs`` at once.
    OpenEnv's stateless HTTP ``/reset`` and ``/step`` build a fresh env per request, so only ``/reset`` is
    useful there; an error in a request (HTTP or WebSocket) is answered with its message.

    Args:
        num_envs: None serves ``PromptLoop-v0``; an int serves its vector form with that many sub-envs.
        max_concurrent_envs: how many sessions may be open at once.
        **env_kwargs: the arguments of ``PromptLoop-v0`` (every session's env gets the same).
    """
    from fastapi.responses import JSONResponse

    if num_envs is None:
        factory, action_cls, observation_cls = PromptLoopEnvironment, PromptLoopAction, PromptLoopObservation
    else:
        factory = partial(PromptLoopVectorEnvironment, num_envs)
        action_cls, observation_cls = PromptLoopVectorAction, PromptLoopVectorObservation
    app = create_app(
        partial(factory, **env_kwargs),
        action_cls,
        observation_cls,
        env_name="promptloop",
        max_concurrent_envs=max_concurrent_envs,
    )

    # An env built now keeps the backbone loaded (envs share a backbone while one holds it), so a new session
    # starts without loading weights, which would stall the server for seconds on a busy machine.
    app.state.promptloop_warm_env = partial(factory, **env_kwargs)()

    async def bad_request(request: Any, err: Exception) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": f"{type(err).__name__}: {err}"})

    for error in (ValueError, TypeError, RuntimeError, gym.error.Error):  # the env's own errors: the request's fault
        app.add_exception_handler(error, bad_request)
    return app


class PromptLoopClient(EnvClient[PromptLoopAction, PromptLoopObservation, PromptLoopState]):
    """OpenEnv client of a ``PromptLoop-v0`` server: one WebSocket session, one env.

    ``reset(seed=..., query=..., noise_seed=...)`` and ``step(PromptLoopAction(prompt=...))`` return OpenEnv's
    ``StepResult`` with a :class:`PromptLoopObservation`; a server-side error raises ``RuntimeError`` with its
    message. Use ``.sync()`` for a blocking client.
    """

    def _step_payload(self, action: PromptLoopAction) -> dict[str, Any]:
        return {"prompt": action.prompt} if isinstance(action, PromptLoopAction) else {"prompt": action}

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[PromptLoopObservation]:
        observation = PromptLoopObservation(
            **payload.get("observation", {}), reward=payload.get("reward"), done=payload.get("done", False)
        )
        return StepResult(observation=observation, reward=payload.get("reward"), done=payload.get("done", False))

    def _parse_state(self, payload: dict[str, Any]) -> PromptLoopState:
        return PromptLoopState(**payload)


class PromptLoopVectorClient(EnvClient[PromptLoopVectorAction, PromptLoopVectorObservation, PromptLoopState]):
    """OpenEnv client of a vector-form server (``create_promptloop_app(num_envs=N)``)."""

    def _step_payload(self, action: PromptLoopVectorAction) -> dict[str, Any]:
        return {"prompts": list(action.prompts)}

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[PromptLoopVectorObservation]:
        observation = PromptLoopVectorObservation(
            **payload.get("observation", {}), reward=payload.get("reward"), done=payload.get("done", False)
        )
        return StepResult(observation=observation, reward=payload.get("reward"), done=payload.get("done", False))

    def _parse_state(self, payload: dict[str, Any]) -> PromptLoopState:
        return PromptLoopState(**payload)


class RemotePromptLoopEnv(gym.Env):
    """A Gymnasium env whose episodes run on a PromptLoop OpenEnv server (observations as the local env's).

    The observation is ``PromptLoop-v0``'s dict (the image decoded to uint8 ``[H, W, 3]``), ``info`` the env's
    (``final_image`` decoded too). ``reset(seed=..., options={"query": ..., "noise_seed": ...})`` and
    ``step(prompt)`` work as locally. The spaces are read from one episode start at construction.

    Args:
        base_url: the server, e.g. ``"http://127.0.0.1:8000"``.
        **client_kwargs: arguments of OpenEnv's ``EnvClient`` (``message_timeout_s``, ...).
    """

    def __init__(self, base_url: str, **client_kwargs: Any) -> None:
        self.client = PromptLoopClient(base_url=base_url, **client_kwargs).sync()
        self.client.connect()
        text = spaces.Text(max_length=4096, min_length=0, charset=promptloop_env.PROMPT_CHARSET)
        obs, info = self._unpack(self.client.reset().observation)
        self.action_space = text
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, obs["image"].shape, np.uint8),
                "query": text,
                "prompt": text,
                "segment": spaces.Discrete(len(info["refine_steps"]) + 1),
                "timestep": spaces.Box(0.0, 1.0, (1,), np.float32),
            }
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        return self._unpack(self.client.reset(seed=seed, **(options or {})).observation)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        result = self.client.step(PromptLoopAction(prompt=action))
        obs, info = self._unpack(result.observation)
        return obs, float(result.reward or 0.0), bool(result.done), False, info

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def _unpack(observation: PromptLoopObservation) -> tuple[dict[str, Any], dict[str, Any]]:
        obs = {
            "image": decode_image(observation.image),
            "query": observation.query,
            "prompt": observation.prompt,
            "segment": np.int64(observation.segment),
            "timestep": np.array([observation.timestep], dtype=np.float32),
        }
        info = dict(observation.info)
        if "final_image" in info:
            info["final_image"] = decode_image(info["final_image"])
        return obs, info


def main(argv: list[str] | None = None) -> None:
    """``python -m promptloop_env.integrations.openenv``: serve PromptLoop-v0 with uvicorn."""
    import argparse
    import json

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--num-envs", type=int, default=None, help="serve the vector form with this many sub-envs")
    parser.add_argument("--max-concurrent-envs", type=int, default=4)
    parser.add_argument("--backbone", default="toy-shapes")
    parser.add_argument("--reward", default="toy-fidelity")
    parser.add_argument(
        "--env-kwargs", default="{}", help='other PromptLoop-v0 arguments as JSON, e.g. {"preview": "vae"}'
    )
    args = parser.parse_args(argv)
    app = create_promptloop_app(
        num_envs=args.num_envs,
        max_concurrent_envs=args.max_concurrent_envs,
        backbone=args.backbone,
        reward=args.reward,
        **json.loads(args.env_kwargs),
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
