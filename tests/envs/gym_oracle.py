#!/usr/bin/python3
# gym_oracle.py -- golden values for tests/envs/test_envs.c: a line-by-line
# transcription of Gymnasium's CartPole-v1, MountainCarContinuous-v0 and
# Acrobot-v1 step code (gymnasium/envs/classic_control/*.py), run under
# numpy 1.24 (Debian's /usr/bin/python3) so the float promotion matches.
#
# sin/cos: Gymnasium calls np.sin/np.cos. On this machine numpy 1.24 uses its
# AVX-512 SIMD kernels for float64 sin/cos, which can differ from glibc's in
# the last bit; over hundreds of steps (and a controller deciding on the
# sign of a float) that grows to 1e-3. The C plugins call libm, so with
# --libm (the default) this script uses math.sin/math.cos and the long
# trajectories must agree bit for bit; --numpy shows numpy's own result.
#
# Usage: /usr/bin/python3 tests/envs/gym_oracle.py [--numpy]
import math
import sys

import numpy as np

if "--numpy" in sys.argv:
    cos, sin = np.cos, np.sin
else:
    cos, sin = math.cos, math.sin
pi = np.pi


def G(seed):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))


def cart_step(s, a):
    x, x_dot, theta, theta_dot = s
    force = 10.0 if a == 1 else -10.0
    costheta = cos(theta)
    sintheta = sin(theta)
    temp = (force + 0.05 * np.square(theta_dot) * sintheta) / 1.1
    thetaacc = (9.8 * sintheta - costheta * temp) / (0.5 * (4.0 / 3.0 - 0.1 * np.square(costheta) / 1.1))
    xacc = temp - 0.05 * thetaacc * costheta / 1.1
    x = x + 0.02 * x_dot
    x_dot = x_dot + 0.02 * xacc
    theta = theta + 0.02 * theta_dot
    theta_dot = theta_dot + 0.02 * thetaacc
    th = 12 * 2 * math.pi / 360
    s = np.array((x, x_dot, theta, theta_dot), dtype=np.float64)
    return s, bool(x < -2.4 or x > 2.4 or theta < -th or theta > th)


def cart_ctrl(o):  # the test's balancing controller, on the float32 observation
    return 1 if o[2] + 0.5 * o[3] + 0.05 * o[0] + 0.1 * o[1] > 0 else 0


def mcc_step(state, action):
    position, velocity = state[0], state[1]
    force = min(max(action, -1.0), 1.0)
    velocity += force * 0.0015 - 0.0025 * cos(3 * position)
    velocity = min(max(velocity, -0.07), 0.07)
    position += velocity
    position = min(max(position, -1.2), 0.6)
    if position == -1.2 and velocity < 0:
        velocity = 0
    return np.array([position, velocity], dtype=np.float32)


def dsdt(sa):
    m1 = m2 = l1 = 1.0
    lc1 = lc2 = 0.5
    I1 = I2 = 1.0
    g = 9.8
    a = sa[-1]
    theta1, theta2, dtheta1, dtheta2 = sa[0], sa[1], sa[2], sa[3]
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos(theta2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * cos(theta2)) + I2
    phi2 = m2 * lc2 * g * cos(theta1 + theta2 - pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * dtheta2**2 * sin(theta2) - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * cos(theta1 - pi / 2) + phi2)
    ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * sin(theta2) - phi2) / (m2 * lc2**2 + I2 - d2**2 / d1)
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return dtheta1, dtheta2, ddtheta1, ddtheta2, 0.0


def rk4(derivs, y0, t):
    yout = np.zeros((len(t), len(y0)), np.float64)
    yout[0] = y0
    for i in np.arange(len(t) - 1):
        this = t[i]
        dt = t[i + 1] - this
        dt2 = dt / 2.0
        y0 = yout[i]
        k1 = np.asarray(derivs(y0))
        k2 = np.asarray(derivs(y0 + dt2 * k1))
        k3 = np.asarray(derivs(y0 + dt2 * k2))
        k4 = np.asarray(derivs(y0 + dt * k3))
        yout[i + 1] = y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return yout[-1][:4]


def wrap(x, m, M):
    diff = M - m
    while x > M:
        x = x - diff
    while x < m:
        x = x + diff
    return x


def acro_step(s, a):
    ns = rk4(dsdt, np.append(s, [-1.0, 0.0, +1][a]), [0, 0.2])
    ns[0] = wrap(ns[0], -pi, pi)
    ns[1] = wrap(ns[1], -pi, pi)
    ns[2] = min(max(ns[2], -4 * pi), 4 * pi)
    ns[3] = min(max(ns[3], -9 * pi), 9 * pi)
    return ns, bool(-cos(ns[0]) - cos(ns[1] + ns[0]) > 1.0)


def show(tag, s):
    print(tag, [repr(float(v)) for v in s])


s = G(0).uniform(-0.05, 0.05, size=(4,))
for t in range(500):
    s, term = cart_step(s, cart_ctrl(np.array(s, dtype=np.float32)))
    assert not term
show("cart seed 0, 500 steps of cart_ctrl:", s)

st = np.array([G(0).uniform(-0.6, -0.4), 0])
for t in range(999):
    st = mcc_step(st, np.float32(0.0))
show("mcc seed 0, 999 steps of action 0:", st)

s = G(0).uniform(-0.1, 0.1, size=(4,)).astype(np.float32)
for t in range(30):
    s, term = acro_step(s, t % 3)
show("acro seed 0, 30 steps of actions t%3:", s)

s, term = acro_step(np.array([3.0, 0.0, 0.0, 0.0]), 1)
show("acro top: one step of action 1 from (3,0,0,0), terminated=%s:" % term, s)

s = G(0).uniform(-0.1, 0.1, size=(4,)).astype(np.float32)
for n in range(1, 501):
    s, term = acro_step(s, 2 if s[2] >= 0 else 0)
    assert not term
show("acro pump seed 0, 500 steps of sign(dtheta1):", s)
