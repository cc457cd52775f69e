"""Every case, in the order a full run takes them (cheap and local first, S3 last but
idle, which needs the S3 server running)."""

from .common import Case
from .drop import BURST, LATENCY
from .feed import FEED_LATENCY, FEED_READ
from .idle import IDLE
from .local import LARGE, SMALL
from .s3 import CHANGED, FIRST_LARGE, FIRST_SMALL, NOOP

ALL: list[Case] = [SMALL, LARGE, LATENCY, BURST, FEED_LATENCY, FEED_READ, FIRST_SMALL, NOOP, CHANGED, FIRST_LARGE,
                   IDLE]
BY_NAME = {case.name: case for case in ALL}
