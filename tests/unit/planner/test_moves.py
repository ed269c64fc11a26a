"""The tour kernels' moves on their own: every applied move keeps a valid tour and changes its
cost by exactly what it reports, on symmetric and asymmetric matrices."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from controllerd.planner._construct import neighbour_lists, tour_cost
from controllerd.planner._kernels import descend, ils_chunk
from controllerd.planner._moves import try_or3opt
from controllerd.planner._tour_ops import set_positions, swap_blocks, wrap


def _matrix(m: int, seed: int, *, symmetric: bool) -> NDArray[np.int32]:
    rng = np.random.default_rng(seed)
    pts = rng.random((m, 2)) * 100
    D = np.maximum(
        np.abs(pts[:, None, 0] - pts[None, :, 0]), np.abs(pts[:, None, 1] - pts[None, :, 1])
    )
    D = np.rint(D).astype(np.int32)  # coarse ticks: many equal distances, as on rack grids
    if not symmetric:
        D = D + rng.integers(0, 20, size=D.shape).astype(np.int32)
        np.fill_diagonal(D, 0)
    return D


def _cycle(tour: NDArray[np.int32]) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in zip(tour, np.roll(tour, -1), strict=True)}


@pytest.mark.parametrize("m", [1, 2, 7, 200])
def test_wrap_is_modulo_over_the_range_the_moves_use(m: int) -> None:
    # The moves index the tour by wrap(p, m) instead of p % m on their hot paths.
    for p in range(-m, 2 * m):
        assert wrap(p, m) == p % m


@pytest.mark.parametrize("m", [5, 9, 20])
def test_swap_blocks_gives_q_p_r_whichever_pair_it_swaps(m: int) -> None:
    for i in range(m):
        for lp in range(1, m - 1):
            for lq in range(1, m - lp):
                tour = np.arange(m, dtype=np.int32)
                pos = np.empty(m, dtype=np.int32)
                set_positions(tour, pos)
                journal = np.empty((8, 2), dtype=np.int32)
                jlen = np.zeros(1, dtype=np.int64)
                swap_blocks(tour, pos, i, lp, lq, journal, jlen)
                seq = [(i + k) % m for k in range(m)]
                p, q, r = seq[:lp], seq[lp : lp + lq], seq[lp + lq :]
                assert _cycle(tour) == _cycle(np.array(q + p + r, dtype=np.int32))
                assert all(tour[pos[v]] == v for v in range(m))


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_or3opt_reports_the_exact_cost_change(symmetric: bool, seed: int) -> None:
    m = 40
    D = _matrix(m, seed, symmetric=symmetric)
    nout = neighbour_lists(D, 8, False)
    nin = neighbour_lists(D, 8, True)
    rng = np.random.default_rng(seed)
    applied = 0
    for _ in range(5):
        tour = rng.permutation(m).astype(np.int32)
        pos = np.empty(m, dtype=np.int32)
        set_positions(tour, pos)
        for a in range(m):
            before = int(tour_cost(D, tour))
            delta = _or3opt(a, D, nin, nout, symmetric, tour, pos)
            assert sorted(tour.tolist()) == list(range(m))
            assert all(tour[pos[v]] == v for v in range(m))
            assert int(tour_cost(D, tour)) == before + delta
            assert delta <= 0
            applied += delta < 0
    assert applied > 0  # random tours are far from optimal: the move must find gains


def _or3opt(
    a: int,
    D: NDArray[np.int32],
    nin: NDArray[np.int32],
    nout: NDArray[np.int32],
    symmetric: bool,
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
) -> int:
    """`try_or3opt` from node `a` on `tour` (changed in place), with fresh work arrays."""
    m = len(tour)
    queue = np.empty(m, dtype=np.int32)
    inq = np.zeros(m, dtype=np.bool_)
    qs = np.zeros(2, dtype=np.int64)
    journal = np.empty((16, 2), dtype=np.int32)
    jlen = np.zeros(1, dtype=np.int64)
    return int(try_or3opt(a, D, nin, nout, symmetric, tour, pos, queue, inq, qs, journal, jlen))


def _undirected(tour: NDArray[np.int32] | list[int]) -> frozenset[frozenset[int]]:
    return frozenset(
        frozenset((int(a), int(b))) for a, b in zip(tour, np.roll(tour, -1), strict=True)
    )


def test_or3opt_on_symmetric_matrices_also_reverses_both_segments_in_place() -> None:
    # t1 [S1] [S2] t4 → t1 [S1'] [S2'] t4 moves no segment: the asymmetric search (segment
    # swaps only) cannot make it. Wherever the symmetric search gains and the asymmetric one
    # does not, the new tour must be such a double reversal next to t1.
    m = 12
    found = 0
    for seed in range(100):
        D = _matrix(m, seed, symmetric=True)
        nout = neighbour_lists(D, 8, False)
        nin = neighbour_lists(D, 8, True)
        start = np.random.default_rng(seed).permutation(m).astype(np.int32)
        for a in range(m):
            deltas, tours = [], []
            for symmetric in (False, True):
                tour = start.copy()
                pos = np.empty(m, dtype=np.int32)
                set_positions(tour, pos)
                deltas.append(_or3opt(a, D, nin, nout, symmetric, tour, pos))
                tours.append(tour)
            if deltas[0] != 0 or deltas[1] == 0:
                continue
            p1 = int(np.flatnonzero(start == a)[0])
            reversals = set()
            for step in (1, -1):
                seq = [int(start[(p1 + step * k) % m]) for k in range(m)]
                for i in range(1, m - 2):
                    for j in range(i + 1, m - 1):
                        s1, s2 = seq[1 : i + 1], seq[i + 1 : j + 1]
                        reversals.add(_undirected([a, *s1[::-1], *s2[::-1], *seq[j + 1 :]]))
            assert _undirected(tours[1]) in reversals
            assert int(tour_cost(D, tours[1])) == int(tour_cost(D, start)) + deltas[1]
            found += 1
    assert found > 0


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("double_bridge", [True, False])
def test_kicks_keep_the_tours_valid_and_their_costs_exact(
    symmetric: bool, double_bridge: bool
) -> None:
    m = 60
    D = _matrix(m, 4, symmetric=symmetric)
    nout = neighbour_lists(D, 8, False)
    nin = neighbour_lists(D, 8, True)
    tour = np.arange(m, dtype=np.int32)
    first = int(descend(D, nin, nout, symmetric, tour))
    cost = np.array([first, first], dtype=np.int64)
    record = tour.copy()
    rng = np.array([12345], dtype=np.uint64)
    for _ in range(4):
        ils_chunk(D, nin, nout, symmetric, tour, record, cost, rng, 50, 15, 0, double_bridge)
        for t in (tour, record):
            assert sorted(t.tolist()) == list(range(m))
        assert int(tour_cost(D, tour)) == cost[0]
        assert int(tour_cost(D, record)) == cost[1] <= cost[0]
    assert cost[1] <= first
