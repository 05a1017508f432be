"""This trainer beside its peers: the same model, env and PPO settings, per-phase seconds, one run.

    python bench/peers.py [--symbols SPX,GOOGL] [--envs-per-symbol 16] [--num-steps 128]
                          [--iterations 2] [--epochs 4] [--minibatches 4] [--threads 2]
                          [--peers ours,ours-compiled,sb3,maskable,torchrl] [--json PATH]

Every contestant trains the small encoder (run.encoder_preset "small") with actor and critic MLPs
(256, 128) and tanh, on the bundled bars' train split of `--symbols`, `--envs-per-symbol` accounts
each, `--num-steps` steps per rollout, `--epochs` x `--minibatches` per update, no KL early stopping,
on the CPU with `--threads` torch threads:

- ours: `python -m trainers.ppo`'s session (batched env, grouped per-symbol heads, its own AMP
  choice), timed by `Session.iterate`; ours-compiled: the same with run.compile (torch.compile of
  the update's forward and backward; its compilation falls in the untimed warm-up iteration).
- sb3 / maskable: Stable-Baselines3 PPO / sb3-contrib MaskablePPO on a DummyVecEnv of
  `envs.SingleAccountEnv` (one account per gym env) with the encoder as its features extractor;
  phases timed by a callback at each rollout's start and end.
- torchrl: TorchRL's pieces around the batched env wrapped as a TorchRL `EnvBase`: `env.rollout`
  with a `ProbabilisticActor` (masked categorical), the `GAE` module, `ClipPPOLoss` over random
  minibatches, Adam and gradient clipping (CleanRL's loop written with TorchRL's parts).

The peers are an optional extra (`pip install -e ".[peers]"`); a missing one is reported under
`missing` with the command that installs it, and the others still run. JSON: per contestant the
rollout / advantage / update seconds per iteration and account-steps per second, then `ratios`:
each of ours (and ours-compiled, when run) against each peer, per phase and for the whole
iteration. The seconds are medians over `--iterations` timed iterations after one warm-up.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from common import device_name, emit, session_config
from configs.train import TrainConfig
from envs import SingleAccountEnv, VecTradingEnv
from models import FeatureEncoder, MultiSymbolPolicy
from trainers.run.build import open_session

PEERS = {  # name -> (modules it needs, what installs them)
    "ours": ((), ""),
    "ours-compiled": ((), ""),
    "sb3": (("stable_baselines3",), 'pip install -e ".[peers]"  (stable-baselines3)'),
    "maskable": (("stable_baselines3", "sb3_contrib"), 'pip install -e ".[peers]"  (sb3-contrib)'),
    "torchrl": (("torchrl", "tensordict"), 'pip install -e ".[peers]"  (torchrl)'),
}


def median_phases(phases: list[dict[str, float]], batch: int) -> dict[str, float]:
    """Median seconds per phase over iterations, their sum and account-steps/s of the whole."""
    out = {name: statistics.median(p[name] for p in phases) for name in phases[0]}
    out["iteration"] = sum(out.values())
    out["account_steps_per_s"] = batch / out["iteration"]
    return {k: round(v, 4) if k != "account_steps_per_s" else round(v) for k, v in out.items()}


def run_ours(config: TrainConfig, iterations: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(sys.stderr):
        session = open_session(config, Path(run_dir) / "run")
        try:
            session.iterate(sync_timing=True)  # warm-up
            results = [session.iterate(sync_timing=True) for _ in range(iterations)]
        finally:
            session.close()
    phases = [{"rollout": r.rollout_seconds, "update": r.update_seconds} for r in results]
    report = median_phases(phases, session.batch_size)
    report["amp"], report["compile"] = config.ppo.amp, config.run.compile
    return report


def run_sb3(config: TrainConfig, iterations: int, maskable: bool) -> dict[str, float]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv

    run, ppo = config.run, config.ppo

    class Encoder(BaseFeaturesExtractor):
        def __init__(self, observation_space) -> None:
            super().__init__(observation_space, features_dim=config.model.encoder.out_dim)
            # the token order is the spec's (gymnasium sorts a Dict space's keys)
            self.encoder = FeatureEncoder(config.model.encoder, env.envs[0].vec.trading_spec.obs_shapes)

        def forward(self, obs: dict[str, Tensor]) -> Tensor:
            return self.encoder(obs)

    class PhaseTimer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[str, float]] = []

        def _on_rollout_start(self) -> None:
            self.marks.append(("start", time.perf_counter()))

        def _on_rollout_end(self) -> None:
            self.marks.append(("end", time.perf_counter()))

        def _on_step(self) -> bool:
            return True

    def make(symbol: str) -> Callable[[], SingleAccountEnv]:
        return lambda: SingleAccountEnv(symbol, config.env, data_dir=str(run.data_dir))

    env = DummyVecEnv([make(s) for s in run.symbols for _ in range(run.envs_per_symbol)])
    batch = env.num_envs * run.num_steps
    kwargs = dict(
        n_steps=run.num_steps, batch_size=batch // ppo.num_minibatches, n_epochs=ppo.update_epochs,
        learning_rate=ppo.learning_rate, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda, clip_range=ppo.clip_coef,
        ent_coef=0.01, vf_coef=ppo.vf_coef, max_grad_norm=ppo.max_grad_norm, target_kl=None, seed=run.seed,
        device="cpu", verbose=0,
        policy_kwargs=dict(features_extractor_class=Encoder, activation_fn=nn.Tanh,
                           net_arch=dict(pi=list(config.model.actor_hidden), vf=list(config.model.critic_hidden))))
    if maskable:
        from sb3_contrib import MaskablePPO
        model = MaskablePPO("MultiInputPolicy", env, **kwargs)
    else:
        model = PPO("MultiInputPolicy", env, **kwargs)
    timer = PhaseTimer()
    model.learn(total_timesteps=batch * (iterations + 1), callback=timer)
    finished = time.perf_counter()
    marks = [t for _, t in timer.marks] + [finished]  # start, end, start, end, ..., learn's end
    phases = [{"rollout": marks[i + 1] - marks[i], "update": marks[i + 2] - marks[i + 1]}
              for i in range(2, len(marks) - 2, 2)]  # skip the warm-up iteration
    return median_phases(phases, batch)


def run_torchrl(config: TrainConfig, iterations: int) -> dict[str, float]:
    from tensordict import TensorDict
    from tensordict.nn import TensorDictModule
    from torchrl.data import Binary, Categorical, Composite, Unbounded
    from torchrl.envs import EnvBase
    from torchrl.modules import MaskedCategorical, ProbabilisticActor, ValueOperator
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    run, ppo = config.run, config.ppo
    vec = VecTradingEnv(list(run.symbols), run.envs_per_symbol, config.env, "cpu", data_dir=run.data_dir,
                        seed=run.seed)
    keys, n, num_actions = list(vec.trading_spec.obs_shapes), vec.num_envs, vec.trading_spec.num_actions

    class TradingTorchRLEnv(EnvBase):
        """The batched env as a TorchRL env; it resets ended accounts itself (same-step autoreset),
        so `_reset` after the first one only reports the observations the env already holds."""

        def __init__(self) -> None:
            super().__init__(device="cpu", batch_size=[n])
            self.observation_spec = Composite(
                **{k: Unbounded(shape=(n, *shape)) for k, shape in vec.trading_spec.obs_shapes.items()},
                action_mask=Binary(n=num_actions, shape=(n, num_actions), dtype=torch.bool), shape=(n,))
            self.action_spec = Categorical(n=num_actions, shape=(n,))
            self.reward_spec = Unbounded(shape=(n, 1))
            self.obs: dict[str, Tensor] | None = None

        def _observation(self, done: Tensor | None = None) -> TensorDict:
            fields = {k: self.obs[k].clone() for k in keys}
            fields["action_mask"] = vec.action_masks().clone()
            if done is not None:
                fields.update(done=done, terminated=done, truncated=torch.zeros_like(done))
            return TensorDict(fields, batch_size=[n])

        def _reset(self, tensordict: TensorDict | None = None, **kwargs) -> TensorDict:
            if self.obs is None:
                self.obs, _ = vec.reset(seed=run.seed)
            return self._observation(torch.zeros(n, 1, dtype=torch.bool))

        def _step(self, tensordict: TensorDict) -> TensorDict:
            self.obs, reward, terminated, truncated, _ = vec.step(tensordict["action"])
            out = self._observation((terminated | truncated).unsqueeze(-1))
            out["reward"] = reward.float().unsqueeze(-1)
            return out

        def _set_seed(self, seed: int | None) -> None:
            pass

    model = MultiSymbolPolicy(["peer"], config.model, vec.trading_spec)  # one head for every row

    shapes = vec.trading_spec.obs_shapes

    def as_rows(obs: tuple[Tensor, ...]) -> tuple[dict[str, Tensor], tuple[int, ...]]:
        """Observations with any leading dims as a (B, ...) dict, and those dims."""
        lead = obs[0].shape[:obs[0].dim() - len(shapes[keys[0]])]
        return {k: o.reshape(-1, *shapes[k]) for k, o in zip(keys, obs)}, tuple(lead)

    class Logits(nn.Module):  # MaskedCategorical applies the mask
        def forward(self, *obs: Tensor) -> Tensor:
            rows, lead = as_rows(obs)
            return model.log_probs(rows).reshape(*lead, num_actions)

    class Value(nn.Module):
        def forward(self, *obs: Tensor) -> Tensor:
            rows, lead = as_rows(obs)
            return model.value(rows).reshape(*lead, 1)

    actor = ProbabilisticActor(TensorDictModule(Logits(), in_keys=keys, out_keys=["logits"]),
                               in_keys={"logits": "logits", "mask": "action_mask"}, out_keys=["action"],
                               distribution_class=MaskedCategorical, return_log_prob=True)
    critic = ValueOperator(Value(), in_keys=keys)
    env = TradingTorchRLEnv()
    advantage = GAE(gamma=ppo.gamma, lmbda=ppo.gae_lambda, value_network=critic, average_gae=False)
    loss_module = ClipPPOLoss(actor, critic, clip_epsilon=ppo.clip_coef, entropy_coeff=0.01,
                              critic_coeff=ppo.vf_coef, normalize_advantage=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=ppo.learning_rate, eps=ppo.adam_eps)
    batch = n * run.num_steps
    phases = []
    for iteration in range(iterations + 1):
        start = time.perf_counter()
        with torch.no_grad():
            data = env.rollout(run.num_steps, actor, break_when_any_done=False)  # (N, T)
        rolled = time.perf_counter()
        with torch.no_grad():
            advantage(data)
        flat = data.reshape(-1)
        advantaged = time.perf_counter()
        for _ in range(ppo.update_epochs):
            for idx in torch.randperm(batch).split(batch // ppo.num_minibatches):
                losses = loss_module(flat[idx])
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), ppo.max_grad_norm)
                optimizer.step()
        if iteration:
            phases.append({"rollout": rolled - start, "advantage": advantaged - rolled,
                           "update": time.perf_counter() - advantaged})
    return median_phases(phases, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", default="SPX,GOOGL")
    parser.add_argument("--envs-per-symbol", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations after one warm-up")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every contestant")
    parser.add_argument("--peers", default="ours,sb3,maskable,torchrl",
                        help=f"contestants, comma-separated, from {', '.join(PEERS)}")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1] / "data"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.encoder, args.device, args.compile = "small", "cpu", False  # what session_config reads
    torch.set_num_threads(args.threads)
    config = session_config(args, [f"ppo.update_epochs={args.epochs}", f"ppo.num_minibatches={args.minibatches}",
                                   "ppo.target_kl=0", "ppo.minibatch_size=0"],
                            **{"run.eval_every": 0})
    names = args.peers.split(",")
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        sys.exit(f"--peers: unknown {unknown}; choose from {', '.join(PEERS)}")
    runners = {"ours": lambda: run_ours(config, args.iterations),
               "ours-compiled": lambda: run_ours(replace(config, run=replace(config.run, compile=True)),
                                                 args.iterations),
               "sb3": lambda: run_sb3(config, args.iterations, maskable=False),
               "maskable": lambda: run_sb3(config, args.iterations, maskable=True),
               "torchrl": lambda: run_torchrl(config, args.iterations)}
    results, missing = {}, {}
    for name in names:
        modules, install = PEERS[name]
        absent = [m for m in modules if importlib.util.find_spec(m) is None]
        if absent:
            missing[name] = f"{', '.join(absent)} not installed: {install}"
            continue
        print(f"peers: running {name}", file=sys.stderr)
        results[name] = runners[name]()
    ratios = {}
    for mine in ("ours", "ours-compiled"):
        if mine not in results:
            continue
        ours = results[mine]
        for name, peer in results.items():
            if not name.startswith("ours"):
                ratios[f"{name}/{mine}"] = {
                    "iteration": round(peer["iteration"] / ours["iteration"], 2),
                    "rollout": round(peer["rollout"] / ours["rollout"], 2),
                    "update": round((peer["update"] + peer.get("advantage", 0.0)) / ours["update"], 2)}
    emit({"bench": "peers", "device": device_name(torch.device("cpu")), "torch": torch.__version__,
          "symbols": list(config.run.symbols), "accounts": config.run.envs_per_symbol * len(config.run.symbols),
          "num_steps": config.run.num_steps, "epochs": args.epochs, "minibatches": args.minibatches,
          "encoder": "small (2x64)", "results": results, "ratios": ratios, "missing": missing}, args.json)


if __name__ == "__main__":
    main()
