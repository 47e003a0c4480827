"""Reading what a JetStream consumer delivers without nats-py's ``Msg``: the raw intake of the
store actor depends on these to find a write's position, writer and recorded time."""

from __future__ import annotations

import pytest

from broker.delivery import DeliveryError, header, js_position, status

HEADERS = b"NATS/1.0\r\nNats-Msg-Id: abc\r\nCtxstore-Writer:  planner \r\n\r\n"


def test_header_values_are_found_by_exact_name() -> None:
    assert header(HEADERS, b"Ctxstore-Writer") == "planner"
    assert header(HEADERS, b"Nats-Msg-Id") == "abc"
    assert header(HEADERS, b"ctxstore-writer") is None  # as nats-py's dict: exact case
    assert header(HEADERS, b"Writer") is None  # no match inside another name
    assert header(None, b"Nats-Msg-Id") is None


def test_a_repeated_header_reads_as_its_last_value() -> None:
    assert header(b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n", b"A") == "2"


def test_status_notices_are_told_from_messages() -> None:
    assert status(b"NATS/1.0 404 No Messages\r\n\r\n") == b"404"
    assert status(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n") == b"408"
    assert status(HEADERS) is None
    assert status(None) is None


def test_the_stream_position_is_read_from_both_ack_subject_forms() -> None:
    v1 = b"$JS.ACK.CTXSTORE_WRITES.ctxstore-actor.1.42.40.1700000000000000000.7"
    v2 = b"$JS.ACK.hub.ACCHASH.CTXSTORE_WRITES.ctxstore-actor.1.42.40.1700000000000000000.7.x"
    assert js_position(v1) == (42, 1_700_000_000_000_000_000, 7)
    assert js_position(v2) == (42, 1_700_000_000_000_000_000, 7)
    for bad in (b"_INBOX.abc", b"$JS.ACK.S.C.1.x.1.2.3", b""):
        with pytest.raises(DeliveryError):
            js_position(bad)
