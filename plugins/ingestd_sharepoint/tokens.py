"""What `finish` needs to record the outcome of each event a job yielded."""

from __future__ import annotations

from dataclasses import dataclass

from .items import Item
from .verify import ServedDiffers


@dataclass
class Token:
    action: str  # download | repoint | delete | gone (deleted before its download) | library (unreadable)
    item_id: str
    item: Item | None  # the item as it is now; None when gone
    served: ServedDiffers | None = None  # its bytes as served differ from the listing
    refused: int = 0  # under verify = "strict": runs in a row that refused these bytes, this one included
    library: str = ""  # the drive id of the library the item is in (set by `run.Run` as it passes the event on)
