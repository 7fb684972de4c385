"""Response timestamps parsed by the standard library where botocore would use dateutil.

botocore hands every timestamp string of a response to dateutil's general
parser, about 35 µs each, while `datetime.fromisoformat` reads the ISO 8601
form every EC2 response uses (`2026-12-05T10:00:00.000Z`) in a tenth of a
microsecond. A DescribeInstances page of a thousand instances holds some four
thousand of them (launch, attachment and usage-operation times): parsing it
took 0.21 s of CPU, 0.06 s with this (benchmarks/timestamps.py), time the
first SSH handshakes or SSM sends wait for. Strings of exactly that form,
with a zone, are parsed here; anything else (RFC 822 dates, epoch numbers,
naive times, more than six fraction digits) goes to botocore's own parser, so
every answer is the instant botocore gives.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from botocore.utils import parse_timestamp

_ISO_WITH_ZONE = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII
)


def parse(value: Any) -> datetime:
    """The instant `value` names, as botocore.utils.parse_timestamp returns it."""
    if isinstance(value, str) and _ISO_WITH_ZONE.fullmatch(value):
        return datetime.fromisoformat(value)
    return parse_timestamp(value)


def install(session: Any) -> None:
    """Make `parse` the timestamp parser of every client `session` creates from now on."""
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse)
