#!/usr/bin/python3
"""bench_sac.py -- the Python side of run_bench_sac.sh: Pendulum-v1 stepped per
environment in Python/numpy (Gymnasium style), and one SAC gradient update in
eager PyTorch, to compare with bench_sac.c: --part env (the C plugin through
venv) and --part sac (the trainer's agent, trainer/sac_agent.h: replay sample
+ one update, what `rlt train` runs per step); the trainer_step variant compares
with a whole `rlt train` step.

--part env: Pendulum-v1 exactly as gymnasium/envs/classic_control/pendulum.py
  computes it (specs/sac_envs.md 3.1; float64 state, float32 observation,
  numpy calls per step) with TimeLimit's 200-step truncation, one env object
  per environment, step() called from a Python loop and reset() when an
  episode ends -- how a Gymnasium SyncVectorEnv steps it. The action table is
  bench_sac.c's (splitmix64, same seed), and reset draws from
  np.random.default_rng(seed + i) as Gymnasium seeds env i, so the reward-sum
  cross-check must equal the C program's. Lines: "py env_n<N> ns_per_step",
  "py env_n<N> steps_per_s", "py check reward_sum".

--part sac: one update per iteration on a batch of 256 drawn with replacement
  from a preallocated replay buffer of random transitions (20,000 rows), twin
  Q + target critics, tanh-squashed Gaussian actor, automatic temperature,
  Polyak averaging, Adam with lr 1e-3 everywhere, torch.set_num_threads.
  Two update variants, both eager and idiomatic:
    trainer  the order and conventions of trainer/sac_agent.c's
             sac_agent_update with the recipe runs/sac-pendulum.ini
             (sac_envs.md "recommended"):
             log_std clamped to [-20, 2], the stable tanh correction in
             normalized units, critic loss 0.5*(mse1 + mse2), actor every
             update, alpha loss on log_alpha with the actor's log-prob
             detached, Polyak with lerp_;
    cleanrl  cleanrl/sac_continuous_action.py's update: log_std tanh-rescaled
             into [-5, 2], Normal.log_prob minus log(scale(1-y^2)+1e-6),
             critic loss mse1 + mse2, policy_frequency 2 compensated (two actor
             and two alpha steps every other update, the alpha step on a fresh
             log-prob of the updated actor), Polyak as copy_(tau p + (1-tau) t).
  Both do on average one critic, one actor and one alpha step per update.
  The trainer_step variant also runs what one `rlt train` step adds around
  the update: act on one observation (actor sample, no grad),
  step a numpy Pendulum, write the transition into the buffer.
  Lines: "py sac_<variant>_h<H> block_ms <ms per update>" for every timed
  block, then "... ms_per_update <best>" and "... median_ms <median>".

Timing: monotonic clock, a warm-up block, then the best of --reps blocks.
Run with /usr/bin/python3 (the python3 on PATH has no torch). The malloc
tuning of rt_tune_malloc() comes from outside through GLIBC_TUNABLES
(run_bench_sac.sh sets it).
"""
import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

# ---------------------------------------------------------------------------
# Pendulum-v1, Gymnasium style
# ---------------------------------------------------------------------------


def angle_normalize(x):
    return ((x + np.pi) % (2 * np.pi)) - np.pi


class Pendulum:
    """Pendulum-v1 with TimeLimit(200): the arithmetic of Gymnasium's step()."""

    max_speed, max_torque, dt, m, l = 8.0, 2.0, 0.05, 1.0, 1.0

    def __init__(self, g=10.0, max_episode_steps=200):
        self.g = g
        self.max_episode_steps = max_episode_steps
        self.np_random = None
        self.state = None
        self.elapsed = 0

    def reset(self, seed=None):
        if seed is not None or self.np_random is None:
            self.np_random = np.random.default_rng(seed)
        high = np.array([np.pi, 1.0])
        self.state = self.np_random.uniform(low=-high, high=high)
        self.elapsed = 0
        return self._get_obs()

    def _get_obs(self):
        theta, thetadot = self.state
        return np.array([np.cos(theta), np.sin(theta), thetadot], dtype=np.float32)

    def step(self, u):
        th, thdot = self.state
        g, m, l, dt = self.g, self.m, self.l, self.dt
        u = np.clip(u, -self.max_torque, self.max_torque)[0]
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
        newthdot = thdot + (3 * g / (2 * l) * np.sin(th) + 3.0 / (m * l**2) * u) * dt
        newthdot = np.clip(newthdot, -self.max_speed, self.max_speed)
        newth = th + newthdot * dt
        self.state = np.array([newth, newthdot])
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps
        return self._get_obs(), -costs, False, truncated, {}


def bench_actions(seed, count):
    """bench_sac.c's action table: float32 4u-2 from splitmix64's outputs."""
    with np.errstate(over="ignore"):
        i = np.arange(1, count + 1, dtype=np.uint64)
        z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (4.0 * u - 2.0).astype(np.float32)


def run_envs(envs, table, vsteps, row0):
    """vsteps loop iterations over every env; row r of the table is
    table[r*n:(r+1)*n], one action per env (a [1] array, as an agent passes)."""
    n = len(envs)
    rows = len(table) // n
    row = row0
    for _ in range(vsteps):
        base = row * n
        for i, env in enumerate(envs):
            obs, reward, terminated, truncated, info = env.step(table[base + i:base + i + 1])
            if terminated or truncated:
                obs = env.reset()
        row += 1
        if row == rows:
            row = 0
    return row


def bench_env(cfg, n):
    vsteps = max(cfg.env_steps // n, 1)
    rows = max(min(vsteps, (1 << 20) // n), 1)
    table = bench_actions(cfg.seed, rows * n)
    envs = [Pendulum() for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(seed=cfg.seed + i)
    row = run_envs(envs, table, max(vsteps // 10, 1), 0)   # warm-up
    best = None
    for _ in range(cfg.reps):
        t0 = time.perf_counter_ns()
        row = run_envs(envs, table, vsteps, row)
        per_step = (time.perf_counter_ns() - t0) / (vsteps * n)
        best = per_step if best is None else min(best, per_step)
    print(f"py env_n{n} ns_per_step {best:.2f}")
    print(f"py env_n{n} steps_per_s {1e9 / best:.0f}", flush=True)


def env_check(cfg):
    table = bench_actions(cfg.seed, cfg.check_steps)
    env = Pendulum()
    obs = env.reset(seed=cfg.seed)
    total = 0.0
    for t in range(cfg.check_steps):
        obs, reward, terminated, truncated, _ = env.step(table[t:t + 1])
        total += float(np.float32(reward))   # the C plugin reports float32 rewards
        if terminated or truncated:
            obs = env.reset()
    print(f"py check reward_sum {total!r}")
    print(f"py check final_obs {obs[0]:.9g} {obs[1]:.9g} {obs[2]:.9g}", flush=True)


# ---------------------------------------------------------------------------
# SAC update in eager PyTorch
# ---------------------------------------------------------------------------

OBS_DIM, ACT_DIM, BUFFER_ROWS, LOG_2PI = 3, 1, 20000, math.log(2 * math.pi)


def make_nets(torch, hidden):
    nn = torch.nn

    class Actor(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(OBS_DIM, hidden), nn.ReLU(),
                                      nn.Linear(hidden, hidden), nn.ReLU())
            self.mean = nn.Linear(hidden, ACT_DIM)
            self.log_std = nn.Linear(hidden, ACT_DIM)

        def forward(self, x):
            h = self.body(x)
            return self.mean(h), self.log_std(h)

    def critic():
        return nn.Sequential(nn.Linear(OBS_DIM + ACT_DIM, hidden), nn.ReLU(),
                             nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    actor, q1, q2, q1t, q2t = Actor(), critic(), critic(), critic(), critic()
    q1t.load_state_dict(q1.state_dict())
    q2t.load_state_dict(q2.state_dict())
    for p in list(q1t.parameters()) + list(q2t.parameters()):
        p.requires_grad_(False)
    return actor, q1, q2, q1t, q2t


class Sac:
    """The agent's tensors and one update step per variant."""

    def __init__(self, torch, hidden, batch, seed):
        F = torch.nn.functional
        self.torch, self.F, self.batch = torch, F, batch
        torch.manual_seed(seed)
        self.actor, self.q1, self.q2, self.q1t, self.q2t = make_nets(torch, hidden)
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.target_entropy = -float(ACT_DIM)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=1e-3)
        self.opt_q = torch.optim.Adam(list(self.q1.parameters()) + list(self.q2.parameters()), lr=1e-3)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=1e-3)
        self.q_pairs = list(zip(list(self.q1t.parameters()) + list(self.q2t.parameters()),
                                list(self.q1.parameters()) + list(self.q2.parameters())))
        g = torch.Generator().manual_seed(seed + 1)
        self.gen = g
        # A full buffer of random transitions, preallocated once.
        self.obs = torch.randn(BUFFER_ROWS, OBS_DIM, generator=g)
        self.next_obs = torch.randn(BUFFER_ROWS, OBS_DIM, generator=g)
        self.actions = torch.rand(BUFFER_ROWS, ACT_DIM, generator=g) * 2 - 1
        self.rewards = -16 * torch.rand(BUFFER_ROWS, generator=g)
        self.dones = torch.zeros(BUFFER_ROWS)
        self.pos = 0
        self.updates = 0
        self.gamma, self.tau = 0.99, 0.005
        self.scale = 2.0   # Pendulum's action scale (cleanrl's log-prob uses it)

    def sample_batch(self):
        idx = self.torch.randint(0, BUFFER_ROWS, (self.batch,), generator=self.gen)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.dones[idx]

    # trainer/sac_train.c conventions ("recommended") --------------------
    def sample_trainer(self, obs):
        torch = self.torch
        mean, log_std = self.actor(obs)
        log_std = log_std.clamp(-20.0, 2.0)
        eps = torch.randn(mean.shape, generator=self.gen)
        u = mean + log_std.exp() * eps
        y = torch.tanh(u)
        corr = 2.0 * (math.log(2.0) - u - self.F.softplus(-2.0 * u))   # log(1 - tanh(u)^2)
        logp = (-0.5 * eps.pow(2) - log_std - 0.5 * LOG_2PI - corr).sum(1)   # [B]
        return y, logp

    def q(self, net, obs, act):
        return net(self.torch.cat([obs, act], 1)).squeeze(1)   # [B]

    def update_trainer(self):
        torch, F = self.torch, self.F
        obs, act, rew, next_obs, done = self.sample_batch()
        alpha = self.log_alpha.exp().item()
        with torch.no_grad():
            a_next, logp_next = self.sample_trainer(next_obs)
            q_next = torch.min(self.q(self.q1t, next_obs, a_next), self.q(self.q2t, next_obs, a_next))
            y = rew + self.gamma * (1 - done) * (q_next - alpha * logp_next)
        qloss = 0.5 * (F.mse_loss(self.q(self.q1, obs, act), y) + F.mse_loss(self.q(self.q2, obs, act), y))
        if not math.isfinite(qloss.item()):
            raise FloatingPointError("non-finite critic loss")
        self.opt_q.zero_grad()
        qloss.backward()
        self.opt_q.step()
        self.updates += 1
        a_pi, logp_pi = self.sample_trainer(obs)
        q_pi = torch.min(self.q(self.q1, obs, a_pi), self.q(self.q2, obs, a_pi))
        aloss = (alpha * logp_pi - q_pi).mean()
        self.opt_actor.zero_grad()
        aloss.backward()
        self.opt_actor.step()
        lloss = -(self.log_alpha * (logp_pi.detach() + self.target_entropy)).mean()
        self.opt_alpha.zero_grad()
        lloss.backward()
        self.opt_alpha.step()
        with torch.no_grad():
            for t, p in self.q_pairs:
                t.lerp_(p, self.tau)

    # cleanrl/sac_continuous_action.py -------------------------------------
    def sample_cleanrl(self, obs):
        torch = self.torch
        mean, raw = self.actor(obs)
        log_std = -5.0 + 0.5 * (2.0 - (-5.0)) * (torch.tanh(raw) + 1)
        normal = torch.distributions.Normal(mean, log_std.exp())
        u = normal.rsample()
        y = torch.tanh(u)
        logp = normal.log_prob(u) - torch.log(self.scale * (1 - y.pow(2)) + 1e-6)
        return y * self.scale, logp.sum(1, keepdim=True)

    def update_cleanrl(self):
        torch, F = self.torch, self.F
        obs, act, rew, next_obs, done = self.sample_batch()
        act = act * self.scale   # cleanrl stores env-unit actions
        alpha = self.log_alpha.exp().item()
        with torch.no_grad():
            a_next, logp_next = self.sample_cleanrl(next_obs)
            q1n = self.q1t(torch.cat([next_obs, a_next], 1))
            q2n = self.q2t(torch.cat([next_obs, a_next], 1))
            min_qn = torch.min(q1n, q2n) - alpha * logp_next
            y = rew.flatten() + (1 - done.flatten()) * self.gamma * min_qn.view(-1)
        q1v = self.q1(torch.cat([obs, act], 1)).view(-1)
        q2v = self.q2(torch.cat([obs, act], 1)).view(-1)
        qloss = F.mse_loss(q1v, y) + F.mse_loss(q2v, y)
        self.opt_q.zero_grad()
        qloss.backward()
        self.opt_q.step()
        self.updates += 1
        if self.updates % 2 == 0:
            for _ in range(2):
                a_pi, logp_pi = self.sample_cleanrl(obs)
                q_pi = torch.min(self.q1(torch.cat([obs, a_pi], 1)), self.q2(torch.cat([obs, a_pi], 1)))
                aloss = ((alpha * logp_pi) - q_pi).mean()
                self.opt_actor.zero_grad()
                aloss.backward()
                self.opt_actor.step()
                with torch.no_grad():
                    _, logp_fresh = self.sample_cleanrl(obs)
                lloss = (-self.log_alpha.exp() * (logp_fresh + self.target_entropy)).mean()
                self.opt_alpha.zero_grad()
                lloss.backward()
                self.opt_alpha.step()
                alpha = self.log_alpha.exp().item()
        for t, p in self.q_pairs:
            t.data.copy_(self.tau * p.data + (1 - self.tau) * t.data)

    # What one `rlt train` step adds around the update ------------------------
    def act_and_store(self, env, obs_np):
        torch = self.torch
        with torch.no_grad():
            y, _ = self.sample_trainer(torch.from_numpy(obs_np).view(1, OBS_DIM))
        y_np = y.numpy().reshape(ACT_DIM)
        a_env = -2.0 + (y_np + 1.0) * 2.0   # low + (y + 1)/2 (high - low)
        next_obs, reward, terminated, truncated, _ = env.step(a_env)
        p = self.pos
        self.obs[p] = torch.from_numpy(obs_np)
        self.next_obs[p] = torch.from_numpy(next_obs)
        self.actions[p] = torch.from_numpy(y_np)
        self.rewards[p] = float(reward)
        self.dones[p] = float(terminated)
        self.pos = (p + 1) % BUFFER_ROWS
        return env.reset() if (terminated or truncated) else next_obs


def block_updates(updates, hidden):
    """Updates per timed block: the same rule as run_bench_sac.sh's for rlt."""
    return max(updates * 64 // hidden, 20)


def bench_sac(cfg, torch, hidden, variant, with_step):
    agent = Sac(torch, hidden, cfg.batch, cfg.seed)
    update = agent.update_trainer if variant == "trainer" else agent.update_cleanrl
    env, obs = None, None
    if with_step:
        env = Pendulum()
        obs = env.reset(seed=cfg.seed)

    def block(count):
        nonlocal obs
        t0 = time.perf_counter_ns()
        if with_step:
            for _ in range(count):
                obs = agent.act_and_store(env, obs)
                update()
        else:
            for _ in range(count):
                update()
        return (time.perf_counter_ns() - t0) / count / 1e6

    per = block_updates(cfg.updates, hidden)
    block(per)   # warm-up
    times = [block(per) for _ in range(cfg.reps)]
    name = f"sac_{variant}{'_step' if with_step else ''}_h{hidden}"
    for t in times:
        print(f"py {name} block_ms {t:.4f}")
    print(f"py {name} ms_per_update {min(times):.4f}")
    print(f"py {name} median_ms {statistics.median(times):.4f}", flush=True)


def blas_library():
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "libblas.so" in path or "libopenblas" in path:
                    return os.path.realpath(path)
    except OSError:
        pass
    return "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("env", "sac"), required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--env-steps", type=int, default=40000, help="env steps per repetition (over all envs)")
    p.add_argument("--envs", default="1,16,256")
    p.add_argument("--check-steps", type=int, default=1000)
    p.add_argument("--hidden", default="64,256")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--updates", type=int, default=400,
                   help="updates per timed block at hidden 64; updates * 64 / hidden at wider nets (>= 20)")
    p.add_argument("--variants", default="trainer,cleanrl,trainer_step")
    cfg = p.parse_args()
    if min(cfg.reps, cfg.env_steps, cfg.check_steps, cfg.batch, cfg.updates) < 1:
        p.error("--reps, --env-steps, --check-steps, --batch and --updates must be >= 1")

    print(f"py info python {sys.version.split()[0]} numpy {np.__version__}")
    print(f"py info glibc_tunables {os.environ.get('GLIBC_TUNABLES', '(unset)')}", flush=True)
    if cfg.part == "env":
        print(f"py info env_config reps={cfg.reps} steps={cfg.env_steps} seed={cfg.seed} "
              f"check_steps={cfg.check_steps}", flush=True)
        env_check(cfg)
        for n in (int(x) for x in cfg.envs.split(",")):
            bench_env(cfg, n)
        return

    import torch
    torch.set_num_threads(cfg.threads)
    print(f"py info threads {torch.get_num_threads()}")
    print(f"py info torch {torch.__version__}")
    print(f"py info blas {blas_library()}")
    print(f"py info sac_config reps={cfg.reps} updates={cfg.updates} batch={cfg.batch} "
          f"seed={cfg.seed}", flush=True)
    for hidden in (int(h) for h in cfg.hidden.split(",")):
        for v in cfg.variants.split(","):
            if v not in ("trainer", "cleanrl", "trainer_step"):
                p.error(f"unknown variant '{v}' (trainer, cleanrl, trainer_step)")
            bench_sac(cfg, torch, hidden, "trainer" if v == "trainer_step" else v, v == "trainer_step")


if __name__ == "__main__":
    main()
