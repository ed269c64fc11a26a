# mypy: disable-error-code="no-any-return"
# (numba kernels: scalars read from typed arrays are Any to mypy, so returns are not checked)
"""numba primitives on a tour held as an array: reversals, block swaps, the dirty-node queue, RNG.

The tour is `tour` (position → node) with its inverse `pos`. Every change to it is a reversal of a
cyclic range of positions, logged in a journal (`reverse_logged`), so the search can undo a
rejected perturbation in time proportional to what it changed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._jit import jit as _jit


@_jit
def wrap(p: int, m: int) -> int:
    """`p % m` for p in [-m, 2m), without a division (this is on every scan's hot path)."""
    if p >= m:
        return p - m
    if p < 0:
        return p + m
    return p


@_jit
def reverse(tour: NDArray[np.int32], pos: NDArray[np.int32], i: int, j: int) -> None:
    """Reverse the cyclic range of positions i..j (inclusive, going forward)."""
    m = tour.shape[0]
    length = wrap(j - i, m) + 1
    for _ in range(length // 2):
        a = tour[i]
        b = tour[j]
        tour[i] = b
        pos[b] = i
        tour[j] = a
        pos[a] = j
        i += 1
        if i == m:
            i = 0
        j -= 1
        if j < 0:
            j = m - 1


@_jit
def reverse_logged(
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    i: int,
    j: int,
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> None:
    m = tour.shape[0]
    i %= m
    j %= m
    reverse(tour, pos, i, j)
    n_logged = jlen[0]
    if n_logged < journal.shape[0]:
        journal[n_logged, 0] = i
        journal[n_logged, 1] = j
    jlen[0] = n_logged + 1


@_jit
def push(
    v: int | np.int32, queue: NDArray[np.int32], inq: NDArray[np.bool_], qs: NDArray[np.int64]
) -> None:
    if not inq[v]:
        inq[v] = True
        m = queue.shape[0]
        queue[wrap(qs[0] + qs[1], m)] = v
        qs[1] += 1


@_jit
def move_segment(
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    i: int,
    length: int,
    c: int,
    reverse: bool,
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> None:
    """Move positions i..i+length-1 to just after node c (outside it), optionally reversed.

    Done as a swap of adjacent blocks (three reversals), going whichever way moves fewer nodes.
    """
    m = tour.shape[0]
    j = wrap(i + length - 1, m)
    pc = pos[c]
    forward = wrap(pc - j, m)
    backward = wrap(i - pc - 1, m)
    if forward <= backward:
        # [segment][Y] → [Y][segment], Y = j+1..pc
        if not reverse:
            reverse_logged(tour, pos, i, j, journal, jlen)
        reverse_logged(tour, pos, j + 1, pc, journal, jlen)
        reverse_logged(tour, pos, i, pc, journal, jlen)
    else:
        # [X][segment] → [segment][X], X = pc+1..i-1
        reverse_logged(tour, pos, pc + 1, i - 1, journal, jlen)
        if not reverse:
            reverse_logged(tour, pos, i, j, journal, jlen)
        reverse_logged(tour, pos, pc + 1, j, journal, jlen)


@_jit
def swap_blocks(
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    i: int,
    lp: int,
    lq: int,
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> None:
    """Turn the cyclic blocks P Q R (P = lp positions from i, Q = the next lq, R = the rest)
    into Q P R, by swapping whichever two adjacent blocks are shortest (the same cycle)."""
    m = tour.shape[0]
    lr = m - lp - lq
    if lr >= lp and lr >= lq:
        a, la, lb = i, lp, lq  # swap P, Q
    elif lp >= lq:
        a, la, lb = i + lp, lq, lr  # swap Q, R
    else:
        a, la, lb = i + lp + lq, lr, lp  # swap R, P
    reverse_logged(tour, pos, a, a + la - 1, journal, jlen)
    reverse_logged(tour, pos, a + la, a + la + lb - 1, journal, jlen)
    reverse_logged(tour, pos, a, a + la + lb - 1, journal, jlen)


@_jit
def set_positions(tour: NDArray[np.int32], pos: NDArray[np.int32]) -> None:
    for t in range(tour.shape[0]):
        pos[tour[t]] = t


@_jit
def rand_below(rng: NDArray[np.uint64], bound: int) -> int:
    """xorshift64*: a tiny RNG whose whole state is one array cell, so runs are reproducible."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    r = (x * np.uint64(2685821657736338717)) >> np.uint64(33)
    return int(r % np.uint64(bound))
