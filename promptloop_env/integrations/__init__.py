"""Adapters that plug PromptLoop into other people's trainers; each imports its library lazily.

* :mod:`~promptloop_env.integrations.vector_wrappers`: the array-only wrappers of :mod:`promptloop_env.wrappers`
  in vector form, for ``PromptLoopVectorEnv`` (one batched model call per step).
* :mod:`~promptloop_env.integrations.sb3`: a stable-baselines3 ``VecEnv`` over a Gymnasium vector env
  (``pip install promptloop[sb3]``).
* :mod:`~promptloop_env.integrations.openenv`: ``PromptLoop-v0`` served as an OpenEnv environment, and its
  client (``pip install promptloop[openenv]``).
"""
