"""Counter-based per-sample random streams: splitmix64 on torch int64.

A sample's j-th uniform is splitmix64(seed, j), so it depends on nothing but its seed;
view_seeds derives the seeds from (run seed, step, image index, view), so that any
view can be regenerated. The fixed positions of each parameter in the stream are here too.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _signed(v: int) -> int:
    """Python int mod 2**64 -> the int64 with the same bits."""
    v &= _MASK64
    return v - (1 << 64) if v >= (1 << 63) else v


def _mix_py(z: int) -> int:
    """splitmix64 finaliser on Python ints (exact, unsigned)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping multiply): a bijection."""
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


def view_seeds(seed: int, step: int, idx: torch.Tensor, view: int) -> torch.Tensor:
    """int64 per-sample seeds, a pure function of (run seed, optimiser step,
    image index, view number), on ``idx.device``.

    For fixed (seed, step, view) the map idx -> seed is a bijection of int64,
    so distinct indices never collide; other (seed, step, view) triples give
    unrelated (hashed) seed streams.
    """
    key = _mix_py(int(seed) + _GAMMA)
    key = _mix_py(key ^ (int(step) * _GAMMA + 0x632BE59BD9B4E019))
    key = _mix_py(key ^ (int(view) * _M1 + 0x2545F4914F6CDD1D))
    idx = idx.to(torch.int64)
    return _mix(_mix(idx + _signed(_GAMMA)) ^ _signed(key))


def uniforms(seeds: torch.Tensor, n: int, offset: int = 0) -> torch.Tensor:
    """(B, n) float64 uniforms in [0, 1): u[b, j] = splitmix64 output number
    ``offset + j`` of the stream seeded with ``seeds[b]`` (53-bit mantissa)."""
    j = torch.arange(offset + 1, offset + n + 1, device=seeds.device, dtype=torch.int64)
    z = _mix(seeds.to(torch.int64).unsqueeze(-1) + j * _signed(_GAMMA))
    return _shr(z, 11).to(torch.float64) * (2.0**-53)


# Fixed positions of each parameter in the per-sample uniform stream, so that
# switching an op on/off never changes the other ops' draws.
_N_TRIES = 10
_U_AREA = 0  # 10 draws
_U_RATIO = _N_TRIES  # 10 draws
_U_TOP = 2 * _N_TRIES  # 10 draws
_U_LEFT = 3 * _N_TRIES  # 10 draws
_U_FLIP = 40
_U_JIT = 41
_U_B, _U_C, _U_S, _U_H = 42, 43, 44, 45
_U_ORDER = 46  # 4 draws, argsorted into a permutation
_U_GRAY = 50
_U_BLUR = 51
_U_SIGMA = 52
_N_U = 53
