"""ReplayGuard on its own: the window, resends, replays, staleness, and a restart's memory."""

from __future__ import annotations

from amoskys.bus.replay import ReplayGuard, Verdict

NOW = 1_800_000_000 * 10**9
SKEW = 300 * 10**9


def key(seq: int, variant: str = "") -> bytes:
    return f"key-{seq}{variant}".encode()


def guard(window: int = 4, stored: dict | None = None, loaded: list | None = None) -> ReplayGuard:
    stored = stored if stored is not None else {}
    return ReplayGuard(window, SKEW, load=lambda agent, w: list(loaded or []), is_stored=lambda k: k in stored)


def test_new_numbers_in_any_order_within_the_window():
    g = guard(window=4)
    assert [g.admit("a", s, key(s), NOW, NOW) for s in (3, 5, 4, 8, 6)] == [Verdict.NEW] * 5
    assert g.highest("a") == 8
    assert g.admit("a", 1, key(1), NOW, NOW) is Verdict.REPLAYED  # below the window (8 - 4), never taken
    assert g.admit("a", 3, key(3), NOW, NOW) is Verdict.RESEND  # below the window too, but taken: the same envelope
    assert g.admit("b", 1, key(1), NOW, NOW) is Verdict.NEW  # agents do not share numbers


def test_same_number_same_key_is_a_resend_other_key_a_replay():
    g = guard()
    assert g.admit("a", 5, key(5), NOW, NOW) is Verdict.NEW
    assert g.admit("a", 5, key(5), NOW, NOW) is Verdict.RESEND
    assert g.admit("a", 5, key(5, "x"), NOW, NOW) is Verdict.REPLAYED


def test_below_the_window_only_what_is_stored_is_a_resend():
    stored = {key(1): True}
    g = guard(window=2, stored=stored)
    for s in range(1, 10):
        g.admit("a", s, key(s), NOW, NOW)
    assert g.admit("a", 1, key(1), NOW - 10 * SKEW, NOW) is Verdict.RESEND  # old and stale, but stored: duplicate
    assert g.admit("a", 2, key(2), NOW, NOW) is Verdict.REPLAYED


def test_stale_new_envelopes_are_refused_without_using_their_number():
    g = guard()
    assert g.admit("a", 1, key(1), NOW - SKEW - 1, NOW) is Verdict.STALE
    assert g.admit("a", 1, key(1), NOW + SKEW + 1, NOW) is Verdict.STALE
    assert g.admit("a", 1, key(1), NOW - SKEW, NOW) is Verdict.NEW


def test_released_number_can_come_again():
    g = guard()
    assert g.admit("a", 1, key(1), NOW, NOW) is Verdict.NEW
    g.release("a", 1, key(1))  # the store did not take it
    assert g.admit("a", 1, key(1), NOW, NOW) is Verdict.NEW


def test_a_restart_remembers_the_window_from_the_store():
    g = guard(window=4, loaded=[(7, key(7)), (8, key(8))], stored={key(7): True, key(8): True})
    assert g.admit("a", 8, key(8), NOW, NOW) is Verdict.RESEND
    assert g.admit("a", 8, key(8, "x"), NOW, NOW) is Verdict.REPLAYED
    assert g.admit("a", 3, key(3), NOW, NOW) is Verdict.REPLAYED  # below 8 - 4
    assert g.admit("a", 6, key(6), NOW, NOW) is Verdict.NEW  # inside the window, never seen
    assert g.admit("a", 9, key(9), NOW, NOW) is Verdict.NEW


def test_memory_stays_bounded_by_the_window():
    g = guard(window=8)
    for s in range(1, 10_000):
        g.admit("a", s, key(s), NOW, NOW)
    assert len(g._agents["a"].seen) <= 2 * 8 + 1
