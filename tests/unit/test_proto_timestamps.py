"""A datetime answered over gRPC reads back as the same text as over HTTP and Thrift (pydantic's):
a client comparing answers across transports sees one value, not ``.61987Z`` and ``.619870Z``."""

from __future__ import annotations

import datetime

import pydantic
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from lumi.transports._proto_codec import _timestamp_out

AT = pydantic.TypeAdapter(datetime.datetime)


@pytest.mark.parametrize(
    "micro", [0, 1, 10, 619870, 120000, 500000, 999999], ids=lambda m: f"{m}us"
)
def test_a_timestamp_reads_as_pydantic_writes_it(micro: int) -> None:
    when = datetime.datetime(2026, 12, 2, 3, 26, 36, micro, tzinfo=datetime.UTC)
    stamp = Timestamp()
    stamp.FromDatetime(when)
    assert _timestamp_out(stamp) == AT.dump_python(when, mode="json")


def test_nanoseconds_are_kept_when_the_instant_has_them() -> None:
    stamp = Timestamp(seconds=1, nanos=123456789)
    assert _timestamp_out(stamp) == "1970-01-01T00:00:01.123456789Z"
