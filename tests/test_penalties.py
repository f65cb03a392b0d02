"""Reward penalties on token ids against direct Python computations."""

import jax
import numpy as np

from persona_jax.rewards import penalties


def _py_overlap(reply, persona, n):
    pg = {tuple(persona[i : i + n]) for i in range(len(persona) - n + 1)}
    rg = [tuple(reply[i : i + n]) for i in range(len(reply) - n + 1)]
    return sum(g in pg for g in rg) / max(len(rg), 1)


def test_ngram_overlap_matches_python_with_padding():
    rng = np.random.default_rng(0)
    B, R, P = 5, 20, 40
    persona = rng.integers(0, 6, (B, P))
    reply = rng.integers(0, 6, (B, R))
    reply[0, :8] = persona[0, 5:13]  # a verbatim copy
    r_len = rng.integers(3, R + 1, B)
    p_len = rng.integers(10, P + 1, B)
    r_mask = np.arange(R)[None] < r_len[:, None]
    p_mask = np.arange(P)[None] < p_len[:, None]
    got = np.asarray(
        jax.jit(penalties.ngram_overlap, static_argnums=4)(reply, r_mask, persona, p_mask, 3)
    )
    want = [
        _py_overlap(list(reply[b, : r_len[b]]), list(persona[b, : p_len[b]]), 3) for b in range(B)
    ]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[0] > 0


def test_contains_sequence_respects_mask():
    reply = np.array([[5, 9, 7, 1, 1], [9, 7, 5, 5, 5], [4, 4, 9, 7, 0]], np.int32)  # as token ids
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    got = np.asarray(penalties.contains_sequence(reply, mask, ((9, 7), (3, 3, 3))))
    # Row 2 holds 9 7 only across its mask boundary, so it does not count.
    np.testing.assert_array_equal(got, [True, True, False])


def test_length_penalties():
    empty, run_on = penalties.length_penalties(np.array([0, 3, 9]), np.array([True, True, False]))
    np.testing.assert_array_equal(np.asarray(empty), [1, 0, 0])
    np.testing.assert_array_equal(np.asarray(run_on), [0, 0, 1])
