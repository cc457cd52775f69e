"""The progress line's text: phase, items of total, bytes and rate, errors, elapsed, estimate."""

from ingestd.console.line import LiveLines, _fit
from ingestd.console.render import Meter, clock, line, size
from ingestd.errors import Code
from ingestd.jobs.manifest import Counters, JobError, LiveProgress, Manifest


def job(**progress) -> Manifest:
    return Manifest(job_id="20261206T120000000000Z-00000001", source="docs", kind="s3", trigger="cli",
                    status="running", created_at="2026-12-06T12:00:00.000Z", started_at="2026-12-06T12:00:00.000Z",
                    items_file="x.items.jsonl", counters=Counters(failed=1), errors_dropped=1,
                    errors=[JobError(code=Code.EMPTY, message="zero-byte file", item="s3://b/e")],
                    progress=LiveProgress(phase="downloading", **progress) if progress else None)


def test_a_known_total_gives_done_of_total_a_rate_and_an_estimate_from_the_bytes():
    meter = Meter()
    line(job(items_done=10, items_total=100, bytes_done=0, bytes_total=100 << 20), meter, now=0.0)
    text = line(job(items_done=10, items_total=100, bytes_done=10 << 20, bytes_total=100 << 20), meter, now=2.0)
    parts = text.split("  ")
    assert parts[:6] == ["docs: downloading", "10/100 items", "10.0 MiB/100.0 MiB", "5.0 MiB/s", "2 errors",
                         parts[5]]
    assert parts[-1] == "~0:18 left"  # 90 MiB at 5 MiB/s, though the items stood still


def test_without_totals_there_is_no_estimate_and_items_drive_it_when_bytes_are_unknown():
    meter = Meter()
    line(job(items_done=0, bytes_done=0), meter, now=0.0)
    assert "left" not in line(job(items_done=50, bytes_done=5000), meter, now=1.0)
    meter = Meter()
    line(job(items_done=0, items_total=100), meter, now=0.0)
    assert line(job(items_done=50, items_total=100), meter, now=10.0).endswith("~0:10 left")


def test_the_rate_follows_the_last_seconds_not_the_whole_job():
    meter = Meter()
    for t in range(0, 21):  # 1 MiB/s for 10 s, then 4 MiB/s
        meter.add(float(t), t, (t if t <= 10 else 10 + 4 * (t - 10)) << 20)
    assert meter.rates()[1] == 4 << 20


def test_the_phase_before_a_job_starts_and_while_originals_move():
    queued = job().model_copy(update={"status": "queued"})
    assert line(queued, Meter()) == "docs: queued, waiting for a worker"
    local = job(items_done=3).model_copy(update={"kind": "local"})
    local.progress.phase = "finishing"
    assert line(local, Meter()).startswith("docs: moving originals  3 items")


def test_a_file_that_stopped_moving_says_so():
    stale = job(items_done=3)
    stale.progress.updated_at = "2026-01-01T00:00:00.000Z"
    assert "(no news for " in line(stale, Meter()) and "no news" not in line(job(items_done=3), Meter())


def test_no_bytes_part_while_no_byte_is_known():
    assert line(job(items_done=4), Meter()).startswith("docs: downloading  4 items  2 errors")
    assert line(job(items_done=4, bytes_total=10), Meter()).startswith("docs: downloading  4 items  0 B/10 B  ")


def test_units():
    assert [size(n) for n in (0, 1023, 1024, 1536 << 20, 5 << 50)] == ["0 B", "1023 B", "1.0 KiB", "1.5 GiB", "5.0 PiB"]
    assert [clock(s) for s in (0, 59.9, 61, 3600 * 27 + 5)] == ["0:00", "0:59", "1:01", "27:00:05"]


def test_a_line_is_cut_to_the_terminal_not_wrapped(monkeypatch):
    assert _fit("x" * 30, 20) == "x" * 19 + "…" and _fit("short", 20) == "short"


class Tty:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_a_log_record_erases_the_block_and_the_next_draw_follows_it():
    out = Tty()
    lines = LiveLines(out)
    lines.draw(["one", "two"])
    lines.write("a warning\n")  # as logging.StreamHandler writes
    lines.draw(["three"])
    lines.clear()
    lines.clear()  # nothing shown: nothing written
    assert out.text == "one\ntwo" + "\r\x1b[K\x1b[1A\x1b[K" + "a warning\n" + "three" + "\r\x1b[K"
