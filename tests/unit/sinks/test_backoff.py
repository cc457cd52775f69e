import random

from ingestd.sinks.backoff import Backoff


def test_waits_grow_exponentially_up_to_the_cap_with_jitter_and_start_over_after_a_success():
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(7))
    waits = [backoff.next() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings))
    assert len({round(w, 6) for w in waits[3:]}) > 1  # jittered, not one fixed value at the cap
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_a_long_outage_never_overflows():
    backoff = Backoff(base=0.5, cap=60.0)
    for _ in range(10_000):
        wait = backoff.next()
    assert 30.0 <= wait <= 60.0
