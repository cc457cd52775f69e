import io
import json
import logging

from ingestd._lib import logs, redact


def capture():
    stream = io.StringIO()
    logs.setup(level="info", fmt="json", stream=stream)
    return stream


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_remembered_secrets_are_masked_everywhere():
    redact.remember("hunter2-very-secret")
    stream = capture()
    logs.get("t").info("connecting with hunter2-very-secret", detail={"nested": ["x hunter2-very-secret y"]})
    logging.getLogger("botocore").warning("header Authorization: hunter2-very-secret")
    text = stream.getvalue()
    assert "hunter2-very-secret" not in text and text.count("***") >= 3


def test_secret_looking_keys_are_masked():
    stream = capture()
    logs.get("t").info("login", password="p", client_secret="abcdef", token_value="t0ken", user="alice")
    (line,) = lines(stream)
    assert line["password"] == line["client_secret"] == line["token_value"] == "***"
    assert line["user"] == "alice"


def test_library_loggers_come_out_as_the_same_json_and_debug_is_suppressed():
    stream = capture()
    logging.getLogger("watchdog.observers").warning("queue trouble")
    logging.getLogger("botocore.endpoint").debug("would print headers")
    logs.get("t").debug("not at info")
    out = lines(stream)
    assert [o["event"] for o in out] == ["queue trouble"]
    assert out[0]["logger"] == "watchdog.observers" and out[0]["level"] == "warning"


def test_tracebacks_have_no_frame_locals():
    stream = capture()
    secret_local = "local-value-should-not-show"  # noqa: F841
    try:
        raise ValueError("boom")
    except ValueError:
        logs.get("t").exception("failed")
    (line,) = lines(stream)
    assert "ValueError: boom" in line["exception"] and "local-value-should-not-show" not in line["exception"]


def test_our_records_skip_the_stdlib_record_round_trip_yet_keep_its_level_and_lock():
    """A daemon logs a line per document: ours are rendered once and written by the root
    handler directly (no LogRecord, no findCaller), library records still go through it."""
    made = []
    original = logging.getLogRecordFactory()
    logging.setLogRecordFactory(lambda *a, **kw: made.append(a[0]) or original(*a, **kw))
    try:
        stream = capture()
        logs.get("ingestd.job").info("document stored", origin_uri="file:///a")
        logs.get("ingestd.job").debug("below the level")
        assert made == []
        logging.getLogger("watchdog").warning("foreign")
        assert made[0] == "watchdog"  # (the formatter copies it: a second one)
    finally:
        logging.setLogRecordFactory(original)
    assert [o["event"] for o in lines(stream)] == ["document stored", "foreign"]
    assert lines(stream)[0]["logger"] == "ingestd.job" and lines(stream)[0]["level"] == "info"


def test_a_record_logged_before_setup_or_after_teardown_still_reaches_stdlib():
    stream = capture()
    logging.getLogger().handlers[:] = []
    seen = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(seen))
    logs.get("t").warning("nobody set me up")
    assert "nobody set me up" in seen.getvalue() and stream.getvalue() == ""
