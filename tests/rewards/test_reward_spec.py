"""make_reward / WeightedReward: names, callables, weighted sums and the checks on what rewards return."""

from __future__ import annotations

import numpy as np
import pytest

from promptloop_env.rewards import REWARDS, WeightedReward, call_reward, make_reward

IMAGES = np.zeros((2, 8, 8, 3), dtype=np.uint8)
QUERIES = ["a", "b"]


def constant(*values: float):
    def reward(images, queries):
        return list(values)

    reward.__name__ = f"constant_{'_'.join(map(str, values))}"
    return reward


def test_a_callable_is_wrapped_with_weight_one():
    reward = make_reward(constant(1.0, 2.0))
    assert isinstance(reward, WeightedReward) and reward.parts[0][2] == 1.0
    np.testing.assert_array_equal(reward(IMAGES, QUERIES), [1.0, 2.0])


def test_weighted_sum_and_components():
    first, second = constant(1.0, 2.0), constant(10.0, -4.0)
    reward = make_reward({first: 0.5, second: -2.0})
    parts = reward.components(IMAGES, QUERIES)
    assert list(parts) == ["constant_1.0_2.0", "constant_10.0_-4.0"]
    np.testing.assert_array_equal(parts["constant_10.0_-4.0"], [10.0, -4.0])
    np.testing.assert_allclose(reward.combine(parts), [0.5 - 20.0, 1.0 + 8.0])
    np.testing.assert_allclose(reward(IMAGES, QUERIES), [-19.5, 9.0])


def test_names_and_callables_mix():
    reward = make_reward({"jpeg-incompressibility": 1.0, "jpeg-compressibility": 1.0, constant(3.0, 3.0): 2.0})
    np.testing.assert_allclose(reward(IMAGES, QUERIES), [6.0, 6.0])


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown reward 'aesthetics'") as info:
        make_reward("aesthetics")
    for name in REWARDS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0], "returned 1 values for a batch of 2"),
        ([1.0, 2.0, 3.0], "returned 3 values for a batch of 2"),
        ([1.0, float("nan")], "non-finite"),
        ([float("inf"), 1.0], "non-finite"),
    ],
)
def test_wrong_count_or_non_finite_values_are_errors(values, message):
    with pytest.raises(ValueError, match=message):
        make_reward(constant(*values))(IMAGES, QUERIES)


def test_non_numeric_output_is_an_error():
    with pytest.raises(ValueError, match="sequence of floats"):
        call_reward(lambda images, queries: None, IMAGES, QUERIES, "broken")
    with pytest.raises(ValueError, match="sequence of floats"):
        call_reward(lambda images, queries: ["x", "y"], IMAGES, QUERIES, "broken")


def test_numpy_and_torch_outputs_are_accepted():
    import torch

    np.testing.assert_array_equal(call_reward(lambda i, q: np.array([1, 2]), IMAGES, QUERIES), [1.0, 2.0])
    np.testing.assert_array_equal(call_reward(lambda i, q: torch.tensor([0.5, 1.5]), IMAGES, QUERIES), [0.5, 1.5])


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), "1.0", None])
def test_bad_weights_are_rejected(weight):
    with pytest.raises(ValueError, match="finite number"):
        make_reward({constant(1.0, 1.0): weight})


def test_empty_dict_and_non_callables_are_rejected():
    with pytest.raises(ValueError, match="at least one"):
        make_reward({})
    with pytest.raises(TypeError, match="registered name, a callable"):
        make_reward(42)


def test_two_lambdas_get_distinct_names_and_both_count():
    reward = make_reward({(lambda images, queries: [1.0, 1.0]): 1.0, (lambda images, queries: [10.0, 10.0]): 1.0})
    parts = reward.components(IMAGES, QUERIES)
    assert {name: values[0] for name, values in parts.items()} == {"<lambda>": 1.0, "<lambda>_1": 10.0}
    np.testing.assert_array_equal(reward(IMAGES, QUERIES), [11.0, 11.0])


def test_two_instances_of_one_reward_class_get_distinct_names():
    from promptloop_env.rewards.jpeg import JpegIncompressibility

    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    low, high = JpegIncompressibility(quality=10), JpegIncompressibility(quality=95)
    reward = make_reward({low: 1.0, high: -1.0, "jpeg-incompressibility": 0.0})
    parts = reward.components(images, QUERIES)
    assert list(parts) == ["JpegIncompressibility", "JpegIncompressibility_1", "jpeg-incompressibility"]
    assert np.all(parts["JpegIncompressibility"] < parts["JpegIncompressibility_1"])
    np.testing.assert_allclose(
        reward(images, QUERIES), parts["JpegIncompressibility"] - parts["JpegIncompressibility_1"]
    )


def test_a_derived_name_steps_aside_for_an_explicit_one():
    first = constant(1.0, 1.0)
    reward = make_reward({first: 1.0, (first.__name__, constant(2.0, 2.0)): 1.0})
    assert list(reward.components(IMAGES, QUERIES)) == ["constant_1.0_1.0_1", "constant_1.0_1.0"]


def test_a_clash_of_explicit_names_is_an_error():
    with pytest.raises(ValueError, match=r"distinct names; \['toy-fidelity'\] named more than once"):
        make_reward({"toy-fidelity": 1.0, ("toy-fidelity", constant(1.0, 1.0)): 1.0})
    with pytest.raises(ValueError, match=r"\['mine'\] named more than once"):
        make_reward({("mine", constant(1.0, 1.0)): 1.0, ("mine", "jpeg-compressibility"): 1.0})
    with pytest.raises(TypeError, match=r"\(name, name_or_callable\) pair"):
        make_reward({(1, constant(1.0, 1.0)): 1.0})


def test_a_named_pair_may_name_a_registry_reward():
    reward = make_reward({("size", "jpeg-incompressibility"): 2.0})
    assert [name for name, _, _ in reward.parts] == ["size"]
