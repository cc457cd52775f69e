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
