"""Bodies and attempt logs are stored compactly and read back exactly."""

from __future__ import annotations

import binascii
import hashlib
import uuid
import zlib
from importlib.resources import files

from tests.support.delivery import room_object
from worker.webhooks.attempt import AttemptResult
from worker.webhooks.bodies import notify_body
from worker.webhooks.stored import attempt_entry, attempt_log, pack_body, unpack_body


def test_a_packed_body_reads_back_byte_for_byte_and_smaller() -> None:
    room = room_object("room01") | {"metadata": '{"room_title":"Maths","room_features":{}}'}
    body = notify_body("room_created", room, event_id=str(uuid.uuid4()))
    packed = pack_body(body)
    assert unpack_body(packed) == body
    assert len(packed) < len(body) / 2


def test_every_body_packs_as_a_fresh_compressor_packs_it_alone() -> None:
    """Packing starts each body from the same primed state: what came before leaves no trace,
    at every level used."""
    zdict = files("worker.webhooks").joinpath("bodies_v1.zdict").read_bytes()
    bodies = [
        notify_body("room_created", room_object(f"room{n:02}"), event_id=str(uuid.uuid4()))
        for n in range(3)
    ] + [b"", b"x" * 5000]
    for level in (1, 9):
        for body in bodies + bodies[::-1]:
            fresh = zlib.compressobj(level, zlib.DEFLATED, -15, 4, zdict=zdict)
            alone = fresh.compress(body) + fresh.flush()
            packed = pack_body(body, level=level)
            assert packed == "z1:" + binascii.b2a_base64(alone, newline=False).decode()
            assert unpack_body(packed) == body


def test_a_body_stored_before_packing_is_read_as_it_is() -> None:
    raw = b'{"event":"room_started","id":"e1","note":"caf\xc3\xa9"}'
    assert unpack_body(raw.decode()) == raw


def test_the_dictionary_of_packed_bodies_never_changes() -> None:
    # Bodies packed as `z1:` stay in Redis for the retention period and decode only with it.
    data = files("worker.webhooks").joinpath("bodies_v1.zdict").read_bytes()
    digest = "5e4d22e1e1ba0a282dea3f14007772bdbfee71adda96a59baffc3a27acb96ad1"
    assert hashlib.sha256(data).hexdigest() == digest


def test_the_attempt_log_reads_back_as_the_deliveries_api_shows_it() -> None:
    answered = AttemptResult(200, None, 12.34, "line one\nline two").as_record(1700000000.1234)
    failed = AttemptResult(None, "timeout after 2 s", 2000.0, "").as_record(1700000002.5)
    stored = "\n".join([attempt_entry(answered), attempt_entry(failed)])
    assert attempt_log(stored) == [answered, failed]
    assert attempt_log(None) == attempt_log("") == []


def test_one_quick_answer_fits_the_compact_hash_encoding() -> None:
    # Redis keeps a hash compact only while every value is at most 64 bytes.
    ok = AttemptResult(200, None, 29.83, "ok").as_record(1796125871.599)
    assert len(attempt_entry(ok)) <= 64
