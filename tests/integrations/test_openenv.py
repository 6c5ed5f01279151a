"""PromptLoop served with openenv-core on 127.0.0.1: episodes through the client equal a local env's."""

from __future__ import annotations

import doctest
import socket
import threading
import time
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import pytest

import promptloop_env  # noqa: F401
from promptloop_env.testing import tiny_pipe
from promptloop_env.wrappers import FormatChatObservation

pytest.importorskip("openenv")
uvicorn = pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")

from promptloop_env.integrations import openenv  # noqa: E402
from promptloop_env.integrations.openenv import (  # noqa: E402
    PromptLoopAction,
    PromptLoopClient,
    PromptLoopVectorAction,
    PromptLoopVectorClient,
    RemotePromptLoopEnv,
    create_promptloop_app,
    decode_image,
)

ENV_KWARGS = {
    "reward": "jpeg-incompressibility",
    "num_inference_steps": 4,
    "num_refinements": 2,
    "preview": "latent_rgb",
    "preview_size": 32,
}
ACTIONS = ["a red circle, bright", "a red circle at night"]


@contextmanager
def serve(**app_kwargs):
    """Serve ``PromptLoop-v0`` on the tiny test model (``ENV_KWARGS``) for the block; see :func:`serve_app`."""
    with serve_app(create_promptloop_app(backbone=tiny_pipe(), **ENV_KWARGS, **app_kwargs)) as url:
        yield url


@contextmanager
def serve_app(app):
    """Run ``app`` on 127.0.0.1 (a free port) in a thread for the block; always stopped within seconds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


def local_episode(seed: int, query: str, noise_seed: int | None = None):
    env = gym.make("PromptLoop-v0", backbone=tiny_pipe(), **ENV_KWARGS)
    options = {"query": query} if noise_seed is None else {"query": query, "noise_seed": noise_seed}
    steps = [env.reset(seed=seed, options=options)]
    steps += [env.step(action) for action in ACTIONS]
    return steps


def remote_episode(client, seed: int, query: str, noise_seed: int | None = None):
    kwargs = {"query": query} if noise_seed is None else {"query": query, "noise_seed": noise_seed}
    results = [client.reset(seed=seed, **kwargs)]
    results += [client.step(PromptLoopAction(prompt=action)) for action in ACTIONS]
    return results


def assert_same_episode(local, remote):
    for k, (step, result) in enumerate(zip(local, remote, strict=True)):
        obs, info = step[0], step[-1]
        o = result.observation
        np.testing.assert_array_equal(decode_image(o.image), obs["image"])  # bit-exact: same process, lossless PNG
        assert (o.query, o.prompt, o.segment) == (obs["query"], obs["prompt"], int(obs["segment"]))
        assert o.timestep == pytest.approx(float(obs["timestep"][0]))
        assert set(o.info) == set(info)
        assert o.info["noise_seed"] == info["noise_seed"] and o.info["prompts"] == info["prompts"]
        if k > 0:
            assert result.reward == step[1] and result.done == step[2]
    np.testing.assert_array_equal(
        decode_image(remote[-1].observation.info["final_image"]), local[-1][-1]["final_image"]
    )
    assert remote[-1].observation.info["reward_components"] == pytest.approx(local[-1][-1]["reward_components"])


def test_doctests():
    assert doctest.testmod(openenv).failed == 0


def test_episodes_through_the_client_equal_local_ones_and_sessions_are_isolated():
    with serve() as url, PromptLoopClient(base_url=url).sync() as a, PromptLoopClient(base_url=url).sync() as b:
        # Interleaved sessions: each one's episode is exactly the local env's with its own seed.
        remote_a = [a.reset(seed=3, query="a red circle")]
        remote_b = [b.reset(seed=4, query="a blue square", noise_seed=123)]
        for action in ACTIONS:
            remote_a.append(a.step(PromptLoopAction(prompt=action)))
            remote_b.append(b.step(PromptLoopAction(prompt=action)))
        assert_same_episode(local_episode(3, "a red circle"), remote_a)
        assert_same_episode(local_episode(4, "a blue square", noise_seed=123), remote_b)
        assert remote_b[0].observation.info["noise_seed"] == 123
        state = a.state()
        assert (state.step_count, state.seed, state.query) == (2, 3, "a red circle")
        # The same seed replays the same episode in a session that has already played one.
        assert_same_episode(local_episode(3, "a red circle"), remote_episode(a, 3, "a red circle"))


def test_remote_gymnasium_env_matches_the_local_env():
    with serve() as url:
        remote = RemotePromptLoopEnv(url)
        try:
            local = gym.make("PromptLoop-v0", backbone=tiny_pipe(), **ENV_KWARGS)
            for seed in (0, 1):
                r_obs, r_info = remote.reset(seed=seed)
                l_obs, l_info = local.reset(seed=seed)
                assert remote.observation_space.contains(r_obs)
                np.testing.assert_array_equal(r_obs["image"], l_obs["image"])
                assert r_info["query"] == l_info["query"] and r_info["noise_seed"] == l_info["noise_seed"]
                for action in ACTIONS:
                    r_obs, r_reward, r_term, r_trunc, r_info = remote.step(action)
                    l_obs, l_reward, l_term, l_trunc, l_info = local.step(action)
                    np.testing.assert_array_equal(r_obs["image"], l_obs["image"])
                    assert (r_reward, r_term, r_trunc) == (l_reward, l_term, l_trunc)
                np.testing.assert_array_equal(r_info["final_image"], l_info["final_image"])
            chat = FormatChatObservation(remote)  # the spaces are known at construction, so wrappers apply
            assert chat.reset(seed=0)[0]["image"].shape == (32, 32, 3)
        finally:
            remote.close()


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving():
    with serve(max_concurrent_envs=2) as url:
        with PromptLoopClient(base_url=url).sync() as client:
            with pytest.raises(RuntimeError, match=r"before calling env.reset\(\)"):
                client.step(PromptLoopAction(prompt="a cat"))
            with pytest.raises(RuntimeError, match=r"Unknown reset arguments \['colour'\]"):
                client.reset(seed=0, colour="red")
            with pytest.raises(RuntimeError, match="seed must be a non-negative int"):
                client.reset(seed="zero")
            with pytest.raises(RuntimeError, match="Unknown backbone|noise_seed"):
                client.reset(seed=0, noise_seed="x")
            with pytest.raises(RuntimeError, match="Invalid message|VALIDATION_ERROR"):
                client.step({"prompt": 3})
            client.reset(seed=0, query="a cat")
            for action in ACTIONS:
                client.step(PromptLoopAction(prompt=action))
            with pytest.raises(RuntimeError, match="terminated"):
                client.step(PromptLoopAction(prompt="again"))
            assert client.reset(seed=0, query="a cat").observation.segment == 0  # the session still works
        # HTTP: validation errors and env errors are answered, not crashes.
        assert requests.post(f"{url}/reset", json={"seed": -1}, timeout=30).status_code == 422
        response = requests.post(f"{url}/step", json={"action": {"prompt": "a cat"}}, timeout=30)
        assert response.status_code == 400 and "reset()" in response.json()["detail"]
        assert requests.post(f"{url}/step", json={"action": {"prompt": 3}}, timeout=30).status_code == 422
        assert requests.post(f"{url}/reset", json={"seed": 1}, timeout=30).json()["observation"]["segment"] == 0
        assert requests.get(f"{url}/health", timeout=30).status_code == 200


def test_vector_form_equals_the_local_vector_env():
    with serve(num_envs=2) as url, PromptLoopVectorClient(base_url=url).sync() as client:
        local = gym.make_vec("PromptLoop-v0", num_envs=2, backbone=tiny_pipe(), **ENV_KWARGS)
        queries = ["a red circle", "a blue square"]
        result = client.reset(seed=5, query=queries)
        obs, info = local.reset(seed=5, options={"query": queries})
        for step in range(len(ACTIONS) + 1):
            o = result.observation
            assert [decode_image(image).tolist() for image in o.images] == obs["image"].tolist()
            assert o.queries == queries and o.segments == obs["segment"].tolist()
            assert [i["noise_seed"] for i in o.infos] == info["noise_seed"].tolist()
            if step == len(ACTIONS):
                break
            prompts = [f"{q}, {ACTIONS[step]}" for q in queries]
            result = client.step(PromptLoopVectorAction(prompts=prompts))
            obs, rewards, terminated, _, info = local.step(prompts)
            assert (
                result.observation.rewards == rewards.tolist() and result.observation.terminated == terminated.tolist()
            )
        assert result.done and result.reward == pytest.approx(rewards.sum())
        with pytest.raises(RuntimeError, match="num_envs=2"):
            client.step(PromptLoopVectorAction(prompts=["only one"]))
