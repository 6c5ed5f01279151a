import torch

from promptloop_agents.learners.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def test_checkpoints_round_trip_atomically(tmp_path):
    weight = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    weight.sum().backward()
    optimizer.step()
    for iteration in (1, 2, 3):
        save_checkpoint(tmp_path, iteration, {"w": weight}, optimizer, {"note": "x"}, keep=2)
    (tmp_path / ".checkpoint-000009.safetensors.tmp").write_bytes(b"torn")  # a write killed half-way
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint-000002.safetensors",
        "checkpoint-000003.safetensors",
    ]
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["iteration"] == 3 and state["extra"] == {"note": "x"}
    assert torch.equal(state["adapter"]["w"], weight.detach())
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3, 2))], lr=0.5)
    fresh.load_state_dict(state["optimizer"])
    assert fresh.param_groups[0]["lr"] == 0.1
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
