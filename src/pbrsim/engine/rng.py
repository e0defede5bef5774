"""Random streams: one per (replication, purpose, month[, rule]), never global, never keyed by design.

Per-client draws are counter-based: client i's uniform at month t for a purpose is SplitMix64 of
(stream key, i), so it is the same whatever happened to other clients and only the draws needed are
computed — common random numbers across contract designs by construction. Keys come from
``SeedSequence(seed, spawn_key=(replication, purpose, ...))``; ``keys`` derives many of them at once
(a vectorised copy of numpy's SeedSequence hash, checked against numpy in the tests), so an engine
batch derives every key it needs once, up front.
"""

from __future__ import annotations

import numpy as np

REFERRALS = 0
TRANSITIONS = 1
REJECTIONS = 2
TIE_BREAKS = 3
ALLOCATION = 4
LATENT_CLASS = 5  # one draw per client, keyed by (replication, purpose) only
SERVICE = 6  # a graded provider's monthly choice for each client

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53

# numpy's SeedSequence constants (numpy/random/bit_generator.pyx)
_POOL = 4
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_MASK32 = 0xFFFFFFFF
_S16 = np.uint32(16)


def stream(seed: int, replication: int, purpose: int, *more: int) -> np.random.Generator:
    """A sequential generator for draws that are not per client (referral counts, within-month order)."""
    ss = np.random.SeedSequence(seed, spawn_key=(replication, purpose) + tuple(more))
    return np.random.Generator(np.random.PCG64(ss))


def key(seed: int, replication: int, purpose: int, *more: int) -> np.uint64:
    return np.random.SeedSequence(seed, spawn_key=(replication, purpose) + tuple(more)).generate_state(1, np.uint64)[0]


def _words(x: int) -> list[int]:
    """An entropy integer as numpy's SeedSequence splits it: 32-bit words, least significant first."""
    if x < 0:
        raise ValueError("seeds and spawn keys must be non-negative")
    out = [x & _MASK32]
    x >>= 32
    while x:
        out.append(x & _MASK32)
        x >>= 32
    return out


def keys(seed: int, spawn_keys: np.ndarray) -> np.ndarray:
    """``key(seed, *row)`` for every row of ``spawn_keys`` ([n, L] integers below 2**32), as uint64 [n].

    The hash constants of SeedSequence do not depend on the data, so n keys are n lanes of one
    computation: the same words as ``SeedSequence(seed, spawn_key=row).generate_state(1, np.uint64)``.
    """
    spawn = np.asarray(spawn_keys, dtype=np.int64)
    if spawn.ndim != 2:
        raise ValueError("spawn_keys must be a 2-D array")
    if spawn.size and (spawn.min() < 0 or spawn.max() > _MASK32):
        raise ValueError("spawn keys must be in [0, 2**32)")
    n = len(spawn)
    run = _words(int(seed))
    if spawn.shape[1] and len(run) < _POOL:
        run = run + [0] * (_POOL - len(run))
    entropy = [np.full(n, w, dtype=np.uint32) for w in run] + [spawn[:, j].astype(np.uint32) for j in range(spawn.shape[1])]
    const = [_INIT_A]

    def hashmix(value: np.ndarray) -> np.ndarray:
        value = value ^ np.uint32(const[0])
        const[0] = (const[0] * _MULT_A) & _MASK32
        value = value * np.uint32(const[0])
        return value ^ (value >> _S16)

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = _MIX_L * x - _MIX_R * y
        return r ^ (r >> _S16)

    zero = np.zeros(n, dtype=np.uint32)
    with np.errstate(over="ignore"):
        pool = [hashmix(entropy[i] if i < len(entropy) else zero) for i in range(_POOL)]
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = mix(pool[dst], hashmix(pool[src]))
        for src in range(_POOL, len(entropy)):
            for dst in range(_POOL):
                pool[dst] = mix(pool[dst], hashmix(entropy[src]))
        out = []
        c = _INIT_B
        for i in range(2):  # two 32-bit words make one uint64 (low word first)
            v = pool[i] ^ np.uint32(c)
            c = (c * _MULT_B) & _MASK32
            v = v * np.uint32(c)
            out.append(v ^ (v >> _S16))
    return out[0].astype(np.uint64) | (out[1].astype(np.uint64) << np.uint64(32))


# Array arithmetic on uint64 wraps modulo 2**64 without warnings, which is what SplitMix64 needs.


def counters(clients: np.ndarray) -> np.ndarray:
    """The per-client half of a counter-based draw: (i + 1) · golden ratio (mod 2**64)."""
    return (np.asarray(clients).astype(np.uint64) + np.uint64(1)) * _GOLDEN


def mix_bits(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, in place on a uint64 array ``z`` = key + counter; returns ``z``."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def to_uniform(z: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1) from mixed bits: the top 53 bits scaled."""
    return (z >> np.uint64(11)).astype(np.float64) * _TO_UNIT


def uniforms_from_keys(k, ctr: np.ndarray) -> np.ndarray:
    """Uniforms for clients with counters ``ctr`` under stream key(s) ``k`` (a scalar or one per client)."""
    return to_uniform(mix_bits(ctr + np.asarray(k, dtype=np.uint64)))


def uniforms_at(seed: int, replication: int, purpose: int, month: int, clients: np.ndarray, *more: int) -> np.ndarray:
    """Uniforms in [0, 1) for the given client indices at ``month`` (SplitMix64 of key and index)."""
    return uniforms_from_keys(key(seed, replication, purpose, month, *more), counters(clients))
