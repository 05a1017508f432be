"""PPOLearner: KL early stop, AMP paths, gradient clipping, non-finite losses, checkpoints."""
import io
import math
import os
import subprocess
import sys
import time

import pytest
import torch

import ppo_core.device
import ppo_core.learner
from ppo_core import (MLPActorCritic, NonFiniteLossError, PPOConfig, PPOLearner, RolloutBuffer, StepMetrics,
                      auto_amp, compute_gae, resolve_amp)

T, N, F, A = 16, 4, 3, 2
CLEANRL = dict(learning_rate=2.5e-4, num_minibatches=4)  # PPOConfig's defaults are the trading trainer's


def make_learner(seed=0, device="cpu", **config):
    torch.manual_seed(seed)
    policy = MLPActorCritic(F, A, hidden=(16,)).to(device)
    buf = RolloutBuffer(T, N, {"obs": (F,)}, device, A)
    with torch.no_grad():
        for t in range(T):
            obs = {"obs": torch.randn(N, F, device=device)}
            masks = torch.ones(N, A, dtype=torch.bool, device=device)
            actions, logprobs, values = policy.act(obs, masks)
            buf.insert(t, obs, actions, logprobs, values, torch.randn(N, device=device),
                       torch.rand(N, device=device) < 0.1, masks)
    adv, ret = compute_gae(buf.rewards, buf.values, buf.dones, torch.zeros(N, device=device), 0.99, 0.95)
    cfg = PPOConfig(**{**CLEANRL, "amp": "off", "target_kl": 0.0, **config})
    return policy, PPOLearner(policy, cfg, device), buf, adv, ret


def update(learner, buf, adv, ret, seed=0, **kwargs):
    return learner.update(buf, adv, ret, ent_coef=0.01, progress=kwargs.pop("progress", 0.0),
                          generator=torch.Generator().manual_seed(seed), **kwargs)


def test_kl_early_stop_triggers_when_forced_and_records_the_epoch():
    _, learner, buf, adv, ret = make_learner(learning_rate=0.05, target_kl=1e-6, update_epochs=4)
    stats = update(learner, buf, adv, ret)
    assert stats.epochs_run == 1 and stats.stopped_early
    assert stats.steps.approx_kl.item() > 1e-6
    _, learner, buf, adv, ret = make_learner(learning_rate=0.05, target_kl=0.0, update_epochs=4)
    stats = update(learner, buf, adv, ret)
    assert stats.epochs_run == 4 and not stats.stopped_early


def test_update_changes_the_policy_and_reports_finite_stats():
    policy, learner, buf, adv, ret = make_learner()
    before = [p.detach().clone() for p in policy.parameters()]
    stats = update(learner, buf, adv, ret, num_groups=2)  # also exercises the group layout
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    values = stats.read().scalars()
    assert set(values) >= {f"losses/{name}" for name in StepMetrics._fields}
    assert all(math.isfinite(v) for v in values.values())


def test_bf16_autocast_on_cpu_runs_an_update():
    policy, learner, buf, adv, ret = make_learner(amp="bf16", update_epochs=1, num_minibatches=2)
    dtypes = []
    policy.actor[0].register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    stats = update(learner, buf, adv, ret)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert not learner.scaler.is_enabled()
    assert torch.isfinite(stats.steps.policy_loss) and torch.isfinite(stats.steps.value_loss)
    assert all(p.dtype == torch.float32 for p in policy.parameters())


@pytest.mark.cuda
def test_fp16_with_grad_scaler_on_cuda():
    _, learner, buf, adv, ret = make_learner(device="cuda", amp="auto")
    assert learner.scaler.is_enabled() and learner.amp_dtype == torch.float16
    stats = update(learner, buf, adv, ret)
    assert torch.isfinite(stats.steps.policy_loss) and stats.epochs_run == 4
    assert learner.state_dict()["scaler"]["scale"] > 0


def test_fp16_grad_scaler_skips_overflowing_steps_instead_of_raising():
    # fp16 autocast also runs on CPU (slowly); a huge initial scale overflows the fp16 gradients
    policy, learner, buf, adv, ret = make_learner(amp="fp16", update_epochs=1, num_minibatches=2)
    learner.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)
    before = [p.detach().clone() for p in policy.parameters()]
    stats = update(learner, buf, adv, ret)
    assert stats.skipped_steps.item() == 2 and learner.scaler.get_scale() == 2.0**58
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert torch.isfinite(stats.steps.policy_loss)


def test_fp16_steps_never_read_the_device(monkeypatch):
    """The fp16 path skips non-finite steps on the device: no optimizer step reads a tensor back
    to the host (GradScaler does when the optimizer cannot take found_inf as a tensor)."""
    policy, learner, buf, adv, ret = make_learner(amp="fp16", update_epochs=1, num_minibatches=2)
    learner.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)  # both steps overflow
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _name=name, _original=original: reads.append(_name) or _original(self, *a))
    minibatch = next(buf.minibatches(adv, ret, 2, generator=torch.Generator().manual_seed(0)))
    for _ in range(2):
        learner._step(minibatch, ent_coef=0.01, clip_coef=0.2)
    monkeypatch.undo()
    assert reads == []
    assert learner.scaler.get_scale() == 2.0**58  # both steps were skipped, on the device


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["fp16", "bf16", "off"])
def test_cuda_update_steps_without_host_sync(amp):
    """On CUDA an optimizer step queues work and returns: torch's sync debug mode raises on any
    device-to-host synchronisation inside the minibatch loop's step."""
    _, learner, buf, adv, ret = make_learner(device="cuda", amp=amp)
    minibatch = next(buf.minibatches(adv, ret, 4, generator=torch.Generator("cuda").manual_seed(0)))
    learner._step(minibatch, ent_coef=0.01, clip_coef=0.2)  # warm-up: lazy state allocation
    torch.cuda.set_sync_debug_mode("error")
    try:
        learner._step(minibatch, ent_coef=0.01, clip_coef=0.2)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_update_recomputes_old_logprobs_so_the_first_ratio_is_exactly_one(monkeypatch, amp):
    policy, learner, buf, adv, ret = make_learner(amp=amp, update_epochs=2, num_minibatches=2)
    assert learner.recompute_old_logprobs
    seen = []
    loss = ppo_core.learner.ppo_loss
    monkeypatch.setattr(ppo_core.learner, "ppo_loss",
                        lambda new, old, *a, **k: seen.append((new.detach(), old)) or loss(new, old, *a, **k))
    update(learner, buf, adv, ret)
    assert len(seen) == 4
    assert torch.equal(seen[0][0], seen[0][1])  # first minibatch: exactly the update's own forward
    assert not torch.equal(seen[1][0], seen[1][1])  # the second follows a gradient step


def test_auto_amp_follows_the_device(monkeypatch):
    assert auto_amp(torch.device("cuda")) == "fp16"
    monkeypatch.setattr(ppo_core.device, "cpu_has_native_bf16", lambda: True)
    assert auto_amp(torch.device("cpu")) == "bf16"
    assert resolve_amp("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(ppo_core.device, "cpu_has_native_bf16", lambda: False)
    assert auto_amp(torch.device("cpu")) == "off"
    assert resolve_amp("auto", torch.device("cpu")) is None
    assert resolve_amp("bf16", torch.device("cpu")) == torch.bfloat16  # an explicit choice stands


def test_gradients_are_clipped_to_max_grad_norm():
    _, learner, buf, adv, ret = make_learner(max_grad_norm=1e-3)
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    learner.optimizer.register_step_pre_hook(record)
    stats = update(learner, buf, adv, ret)
    assert len(norms) == 16 and max(norms) <= 1e-3 * (1 + 1e-4)
    assert stats.steps.grad_norm.item() > 1e-3 and stats.steps.clipped_share.item() == 1.0


@pytest.mark.parametrize("poison, name", [("advantages", "policy_loss"), ("returns", "value_loss")])
def test_non_finite_loss_raises_naming_the_term(poison, name):
    _, learner, buf, adv, ret = make_learner()
    if poison == "advantages":
        adv[3, 1] = float("nan")
    else:
        ret[5, 2] = float("inf")
    with pytest.raises(NonFiniteLossError, match=name):
        update(learner, buf, adv, ret)


def test_state_dict_round_trip_resumes_identically():
    policy_a, learner_a, buf, adv, ret = make_learner(seed=1)
    update(learner_a, buf, adv, ret, seed=1)
    policy_b, learner_b, _, _, _ = make_learner(seed=2)
    saved = io.BytesIO()  # through bytes, as a checkpoint file would (no shared tensors)
    torch.save({"policy": policy_a.state_dict(), "learner": learner_a.state_dict()}, saved)
    saved.seek(0)
    state = torch.load(saved)
    policy_b.load_state_dict(state["policy"])
    learner_b.load_state_dict(state["learner"])
    assert learner_b.optimizer.state_dict()["state"][0]["step"] == 16
    update(learner_a, buf, adv, ret, seed=5)
    update(learner_b, buf, adv, ret, seed=5)
    for a, b in zip(policy_a.parameters(), policy_b.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_linear_schedules_follow_progress():
    _, learner, buf, adv, ret = make_learner(learning_rate=1e-3, lr_schedule="linear", clip_schedule="linear")
    stats = update(learner, buf, adv, ret, progress=0.75)
    assert stats.learning_rate == pytest.approx(2.5e-4) and stats.clip_coef == pytest.approx(0.05)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_weight_decay_is_decoupled_from_the_gradient_step():
    """With one optimizer step, a run with weight decay ends exactly lr x weight_decay x the old
    weights below the same run without it (AdamW: the decay never enters Adam's moments)."""
    results = {}
    for decay in (0.0, 0.5):
        policy, learner, buf, adv, ret = make_learner(weight_decay=decay, update_epochs=1, num_minibatches=1)
        before = [p.detach().clone() for p in policy.parameters()]
        update(learner, buf, adv, ret)
        results[decay] = [p.detach().clone() for p in policy.parameters()]
    for old, plain, decayed in zip(before, results[0.0], results[0.5]):
        # float32 weights near 1 round their differences at ~1e-7; the decay itself is ~1e-4
        torch.testing.assert_close(decayed - plain, -2.5e-4 * 0.5 * old, rtol=1e-3, atol=2e-7)


@pytest.mark.parametrize("field, value", [("learning_rate", 0.0), ("update_epochs", 0), ("gamma", 1.5),
                                          ("amp", "fp8"), ("lr_schedule", "cosine"), ("clip_coef", -0.1),
                                          ("weight_decay", -1e-4)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        PPOConfig(**{field: value})


def test_decay_on_matrices_spares_biases_and_norm_gains():
    """With no gradient, decoupled decay alone moves the weights: every parameter shrinks by
    lr x weight_decay under decay = "all", only the 2-D ones under "matrices"."""
    for decay in ("all", "matrices"):
        policy, learner, *_ = make_learner(weight_decay=0.5, decay=decay, learning_rate=0.1)
        before = [p.detach().clone() for p in learner.params]
        for p in learner.params:
            p.grad = torch.zeros_like(p)
        learner.optimizer.step()
        for old, new in zip(before, learner.params):
            shrunk = decay == "all" or old.dim() >= 2
            expected = old * (1 - 0.1 * 0.5) if shrunk else old
            torch.testing.assert_close(new.detach(), expected)
        assert any(p.dim() < 2 for p in learner.params) and any(p.dim() >= 2 for p in learner.params)


@pytest.mark.parametrize("cores, load, processes, requested, expected", [
    (2, 0.0, 1, 0, 2),   # an idle machine: every core
    (2, 2.1, 1, 0, 1),   # both cores busy: one thread, never zero
    (2, 0.4, 1, 0, 2),   # a little background noise does not cost a thread
    (8, 3.0, 1, 0, 5),   # the free cores
    (8, 0.0, 2, 0, 4),   # shared among processes started together
    (8, 0.0, 16, 0, 1),
    (2, 5.0, 1, 3, 3),   # an explicit count stands
])
def test_cpu_threads_leave_busy_cores_alone(monkeypatch, cores, load, processes, requested, expected):
    monkeypatch.setattr(ppo_core.device.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(ppo_core.device, "busy_cores", lambda: load)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert ppo_core.device.cpu_threads(requested, processes) == expected


def test_cpu_threads_follow_a_launchers_omp_num_threads(monkeypatch):
    """torchrun sets OMP_NUM_THREADS=1 for several processes on a machine: auto keeps it."""
    monkeypatch.setattr(ppo_core.device, "busy_cores", lambda: 0.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ppo_core.device.cpu_threads(0) == 1
    assert ppo_core.device.cpu_threads(3) == 3  # an explicit count still stands


def test_busy_cores_sees_a_busy_process():
    """Measured, not assumed: a process spinning on one core shows up as about one more busy core
    (or, on a machine whose other jobs already hold nearly every core, as all of them busy)."""
    idle = ppo_core.device.busy_cores(0.3)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        busy = ppo_core.device.busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    cores = os.cpu_count() or 1
    assert 0.0 <= idle <= cores
    assert busy >= min(idle + 0.5, 0.9 * cores), (idle, busy)
