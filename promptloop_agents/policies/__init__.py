"""Policies: the :class:`Agent` protocol, the baselines, the MLLM policy and the toy worlds' reference agents."""
