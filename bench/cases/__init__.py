"""Every case, in the order a full run takes them (cheap and local first, S3 last but
idle, which needs the S3 server running). DEFAULT is what `make bench` runs; opt-in cases
run when named (`--case NAME`) and, on tiny inputs, in the smoke variant."""

from .bigstore import BIG_STORE
from .cluster import CLUSTER_SCALE
from .common import Case
from .dashboard import DASHBOARD
from .drop import BURST, LATENCY
from .extract import BURST_EXTRACT, FORMATS
from .feed import FEED_LATENCY, FEED_READ
from .idle import IDLE
from .local import LARGE, SMALL
from .million import MILLION
from .s3 import CHANGED, FIRST_LARGE, FIRST_SMALL, NOOP, PROXIED
from .scale import BURST_20K, SCALE_100K
from .sinks import SINK_LATENCY
from .startup import STARTUP

ALL: list[Case] = [SMALL, LARGE, STARTUP, LATENCY, BURST, BURST_EXTRACT, FORMATS, BURST_20K, SCALE_100K, MILLION, BIG_STORE,
                   FEED_LATENCY, SINK_LATENCY, FEED_READ, DASHBOARD, FIRST_SMALL, PROXIED, NOOP, CHANGED, FIRST_LARGE,
                   CLUSTER_SCALE, IDLE]
DEFAULT: list[Case] = [case for case in ALL if not case.opt_in]
BY_NAME = {case.name: case for case in ALL}
