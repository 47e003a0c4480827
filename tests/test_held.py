"""Phases as the state holds them: JSON as is, or compressed with the phase dictionary."""

from __future__ import annotations

import zstandard

from actors.core.held import HOLD_OVER, hold, unhold


def _phase(n: int) -> bytes:
    items = ",".join(
        f'{{"file":"pkg/module_{i}.py","line":{i},"kind":"docstring","detail":"missing"}}'
        for i in range(n)
    )
    return f'{{"issues":[{items}],"files_analyzed":{n}}}'.encode()


def test_small_json_is_held_as_it_is() -> None:
    json = _phase(1)
    assert len(json) <= HOLD_OVER
    assert hold(json) is json or hold(json) == json
    assert unhold(hold(json)) == json


def test_larger_json_is_held_compressed_with_the_dictionary() -> None:
    json = _phase(12)
    assert len(json) > HOLD_OVER
    held = hold(json)
    assert held[:1] != b"{"
    assert zstandard.get_frame_parameters(held).dict_id != 0
    assert unhold(held) == json
    # The dictionary pays: smaller than the same frame without it.
    assert len(held) < len(zstandard.ZstdCompressor(level=3).compress(json))


def test_phases_held_before_the_dictionary_still_read() -> None:
    """Snapshots taken before the dictionary hold frames without one."""
    json = _phase(200)
    old = zstandard.ZstdCompressor(level=3).compress(json)
    assert zstandard.get_frame_parameters(old).dict_id == 0
    assert unhold(old) == json
