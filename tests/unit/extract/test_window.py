"""The extraction cursor moves only over an unbroken run of finished rows."""

from ingestd.extract.window import Window


def test_the_cursor_waits_for_the_slowest_row_below_it():
    w = Window(10)
    for rowid in (11, 12, 15, 20):
        w.issue(rowid)
    assert w.would_be([12, 15]) == 10 and w.low == 10  # 11 still running; nothing changed
    assert w.finish([12, 15]) == 10
    assert w.finish([11]) == 15  # 11, 12 and 15 done: gaps between rowids are nothing to wait for
    assert w.in_flight == 1 and w.high == 20
    assert w.finish([20]) == 20 and w.in_flight == 0
