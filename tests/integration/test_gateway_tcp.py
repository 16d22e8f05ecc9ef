"""The gateway end to end on loopback with a real broker: vehicle sessions answered byte for
byte in both editions (only after Kafka acknowledged the frame), an enterprise platform
forwarding many vehicles, bad credentials, frames split over many reads and glued in one,
garbage and oversized input, record keys and headers, limits, TLS, graceful stop."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.sim.envelope import frame
from ingest.gateway import Gateway
from ingest.gateway.accounts import set_password
from tests.conftest import run_async
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import (
    SHARED_DLQ,
    T,
    close,
    connect,
    login,
    platform_login,
    read_answer,
    realtime,
    reply,
    running,
    sample,
    settings_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _shared_dlq(kafka_bootstrap: str) -> None:
    from devtools.devstack.kafka import ensure_topics

    run_async(ensure_topics(kafka_bootstrap, {SHARED_DLQ: 1}, replication_factor=1))


VIN = "LNEVGATE000000001"


def headers_of(record: object) -> dict[str, bytes]:
    return dict(record.headers)  # type: ignore[attr-defined]


@pytest.mark.parametrize("edition", [2016, 2025])
async def test_vehicle_session_answered_after_kafka_ack(
    kafka_bootstrap: str, unique_topic: Callable[..., str], edition: int
) -> None:
    topic = unique_topic(3, "gw")
    async with running(settings_for(kafka_bootstrap, topic)) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        sent = [
            login(VIN, edition),
            realtime(VIN, edition, 1),
            frame(edition, 0x03, VIN, T + b"\xc0\x00\x01\x07"),  # reissue
            frame(edition, 0x07, VIN, b""),  # heartbeat
            frame(edition, 0x08, VIN, b""),  # time calibration
            frame(edition, 0x04, VIN, T + b"\x00\x01"),  # logout
        ]
        writer.write(sent[0])
        assert await read_answer(reader) == reply(sent[0], 0x01)
        # Answered only after the broker acknowledged: the login is on the topic already.
        assert sum((await ps.end_offsets(kafka_bootstrap, topic)).values()) == 1
        writer.write(b"".join(sent[1:4]))
        assert await read_answer(reader) == reply(sent[3], 0x01, b"")  # no ack for 0x02/0x03
        writer.write(sent[4])
        calibration = await read_answer(reader)
        assert calibration[:22] == reply(sent[4], 0x01)[:22] and calibration[22:24] == b"\0\6"
        writer.write(sent[5])
        assert await read_answer(reader) == reply(sent[5], 0x01)
        await close(writer)
        records = await ps.read_topic(kafka_bootstrap, topic, expect=len(sent))
        assert [r.value for r in records if r.key == VIN.encode()] == sent
        for r in records:
            h = headers_of(r)
            assert h["gateway"] == b"gw-test" and h["peer"].startswith(b"127.0.0.1:")
            assert h["connection"] and int(h["received_at"]) > 1_700_000_000_000
            assert "platform" not in h
        assert (
            sample(
                gw, "nev_gateway_answers_total", kind="vehicle", command="login", result="success"
            )
            == 1
        )
        assert (
            sample(gw, "nev_gateway_frames_received_total", kind="vehicle", command="realtime") == 1
        )


async def test_platform_forwards_many_vehicles_and_bad_credentials_are_refused(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = unique_topic(4, "gw")
    accounts = tmp_path / "accounts.toml"
    set_password(accounts, "oem1", "right-password")
    settings = settings_for(
        kafka_bootstrap, topic, accounts_file=str(accounts), max_login_failures=2
    )
    async with running(settings) as gw:
        # wrong password: error flag, nothing forwarded is accepted, then closed
        reader, writer = await connect(gw.ports["vehicle"])
        bad = platform_login("oem1", "wrong")
        writer.write(bad + realtime(VIN))
        assert await read_answer(reader) == reply(bad, 0x02)
        assert await read_answer(reader) == reply(realtime(VIN), 0x02)  # not logged in
        unknown = platform_login("nobody", "x")
        writer.write(unknown)
        assert await read_answer(reader) == reply(unknown, 0x02)
        assert await reader.read() == b""  # closed after max_login_failures
        await close(writer)
        assert (
            sample(
                gw,
                "nev_gateway_logins_total",
                kind="vehicle",
                login="platform_login",
                result="failed",
            )
            == 2
        )

        reader, writer = await connect(gw.ports["vehicle"])
        good = platform_login("oem1", "right-password", 2025)
        vins = [f"LNEVGATE0000001{i:02d}" for i in range(20)]
        frames = [f for v in vins for f in (login(v), realtime(v, 2016, 1), realtime(v, 2016, 2))]
        writer.write(good + b"".join(frames))  # forwarded frames right behind the login
        assert await read_answer(reader) == reply(good, 0x01)
        # Answers follow each frame's acknowledgement: partitions ack independently.
        answers = [await read_answer(reader) for _ in vins]
        assert sorted(answers) == sorted(reply(login(v), 0x01) for v in vins)
        logout = frame(2025, 0x06, "PLATFORM01", T + b"\x00\x01")
        writer.write(logout)
        assert await read_answer(reader) == reply(logout, 0x01)
        await close(writer)
        records = await ps.read_topic(kafka_bootstrap, topic, expect=len(frames))
        assert Counter(r.value for r in records) == Counter(frames)  # no 0x05/0x06
        assert all(r.key == r.value[4:21] for r in records)
        assert all(headers_of(r)["platform"] == b"oem1" for r in records)
        by_vin: dict[bytes, set[int]] = {}
        for r in records:
            by_vin.setdefault(r.key, set()).add(r.partition)
        assert all(len(parts) == 1 for parts in by_vin.values())  # one VIN, one partition


async def test_after_a_platform_logout_the_connection_has_a_devices_rates_again(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    # The platform's larger rates were granted to its login; they outlived its logout, and
    # the connection could then log in as a vehicle and send at a platform's rate.
    accounts = tmp_path / "accounts.toml"
    set_password(accounts, "oem1", "right-password")
    settings = settings_for(
        kafka_bootstrap, unique_topic(1, "gw"), accounts_file=str(accounts), max_frames_per_s=5.0
    )
    async with running(settings) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        good = platform_login("oem1", "right-password")
        writer.write(good)
        assert await read_answer(reader) == reply(good, 0x01)
        hb = frame(2016, 0x07, VIN, b"")
        burst = [realtime(f"LNEVGATE0000002{i:02d}", 2016, 1) for i in range(20)]
        writer.write(b"".join(burst) + hb)  # 21 frames: within a platform's rate
        assert await read_answer(reader) == reply(hb, 0x01, b"")
        logout = frame(2016, 0x06, "PLATFORM01", T + b"\x00\x01")
        writer.write(logout)
        assert await read_answer(reader) == reply(logout, 0x01)
        assert sample(gw, "nev_gateway_refused_total", kind="vehicle", reason="rate_limited") == 0
        first = login(VIN)
        writer.write(first + b"".join(realtime(VIN, 2016, i) for i in range(20)))
        assert await read_answer(reader) == reply(first, 0x01)
        await ps.until(
            lambda: _rate_limited(gw), timeout_s=10, what="the device rate applied again"
        )
        await close(writer)


async def _rate_limited(gw: Gateway) -> bool:
    return sample(gw, "nev_gateway_refused_total", kind="vehicle", reason="rate_limited") > 0


async def test_split_glued_garbage_and_oversized_input(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic, dlq = unique_topic(1, "gw"), unique_topic(1, "dlq")
    settings = settings_for(
        kafka_bootstrap, topic, dlq, max_frame_bytes=200, max_garbage_bytes=2000
    )
    async with running(settings) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        first = login(VIN)
        for b in first:  # one byte per write: a frame across many reads
            writer.write(bytes((b,)))
            await writer.drain()
        assert await read_answer(reader) == reply(first, 0x01)
        frames = [realtime(VIN, 2016, i) for i in range(50)]
        big = frame(2016, 0x02, VIN, T + b"\xc0" + (300).to_bytes(2, "big") + bytes(300))
        garbage = b"\x7e\x00##\x01garbage$$" + b"\x55" * 100
        stream = garbage + b"".join(frames[:25]) + garbage + big + b"".join(frames[25:])
        hb = frame(2016, 0x07, VIN, b"")
        writer.write(stream + hb)  # many frames, garbage and an oversized one in one write
        assert await read_answer(reader) == reply(big, 0x02)  # refused: error answer
        assert await read_answer(reader) == reply(hb, 0x01, b"")
        records = await ps.read_topic(kafka_bootstrap, topic, expect=52)
        assert [r.value for r in records] == [first, *frames, hb]
        assert (
            sample(gw, "nev_gateway_refused_total", kind="vehicle", reason="frame_too_large") == 1
        )
        # the refused frame is not lost: it is on the dead-letter topic with its reason
        (letter,) = await ps.read_topic(kafka_bootstrap, dlq, expect=1)
        h = headers_of(letter)
        assert letter.value == big and letter.key == VIN.encode()
        assert (h["error.reason"], h["error.stage"]) == (b"frame_too_large", b"gateway")
        assert h["source.topic"] == topic.encode() and h["gateway"] == b"gw-test"
        skipped = sum(
            sample(gw, "nev_gateway_skipped_bytes_total", kind="vehicle", reason=r)
            for r in ("no_start", "bad_length", "bad_checksum")
        )
        assert skipped == 2 * len(garbage)
        # a connection sending only garbage is closed
        writer.write(bytes(3000))
        assert await reader.read() == b""
        assert (
            sample(gw, "nev_gateway_connections_closed_total", kind="vehicle", why="garbage") == 1
        )
        await close(writer)


async def test_a_stranger_refused_before_it_logs_in_fills_no_topic(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # The unknown-command, size and identity checks come before the login check: a
    # connection that never logged in had each such frame produced to the dead-letter topic.
    topic, dlq = unique_topic(1, "gw"), unique_topic(1, "dlq")
    settings = settings_for(kafka_bootstrap, topic, dlq, max_frame_bytes=200)
    async with running(settings) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        big = frame(2016, 0x02, VIN, T + b"\xc0" + (300).to_bytes(2, "big") + bytes(300))
        unknown = frame(2016, 0x00, VIN, T)
        bad_vin = login("lnevgate000000001")
        writer.write(big + unknown + bad_vin)  # an unknown command gets no answer
        assert await read_answer(reader) == reply(big, 0x02)
        assert await read_answer(reader) == reply(bad_vin, 0x02)
        reasons = ("frame_too_large", "unknown_command", "bad_identity")
        counted = [
            sample(gw, "nev_gateway_refused_total", kind="vehicle", reason=r) for r in reasons
        ]
        assert counted == [1, 1, 1]
        # logged in, the same oversized frame is a dead letter (it is the only one): not a
        # platform login on a vehicle session (its password is in clear), nor a stray
        # platform logout (not_logged_in)
        first = login(VIN)
        writer.write(first)
        assert await read_answer(reader) == reply(first, 0x01)
        secret = platform_login("oem1", "the-password")
        stray = frame(2016, 0x06, "PLATFORM01", T + b"\x00\x01")
        writer.write(secret + stray)
        assert await read_answer(reader) == reply(secret, 0x02)
        assert await read_answer(reader) == reply(stray, 0x02)
        writer.write(big)
        assert await read_answer(reader) == reply(big, 0x02)
        (letter,) = await ps.read_topic(kafka_bootstrap, dlq, expect=1)
        assert letter.value == big
        await close(writer)
    assert sum((await ps.end_offsets(kafka_bootstrap, dlq)).values()) == 1


async def test_login_timeout_and_max_connections(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    settings = settings_for(
        kafka_bootstrap, unique_topic(1, "gw"), login_timeout_s=0.2, max_connections=1
    )
    async with running(settings) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        await ps.until(lambda: _open(gw, 1), timeout_s=10, what="the first connection admitted")
        reader2, writer2 = await connect(gw.ports["vehicle"])
        assert await reader2.read() == b""  # over max_connections: closed at accept
        assert await reader.read() == b""  # never logged in: closed
        assert (
            sample(gw, "nev_gateway_connections_closed_total", kind="vehicle", why="login_timeout")
            == 1
        )
        assert (
            sample(gw, "nev_gateway_refused_total", kind="vehicle", reason="max_connections") == 1
        )
        await close(writer, writer2)


async def test_one_address_holds_at_most_max_connections_per_peer(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # One address (127.0.0.2) opens more connections than its share: each one over it is
    # closed at accept, counted and logged, and a vehicle at another address (127.0.0.1)
    # logs in meanwhile. Before, only max_connections bounded one address.
    settings = settings_for(kafka_bootstrap, unique_topic(1, "gw"), max_connections_per_peer=3)
    async with running(settings) as gw:
        port = gw.ports["vehicle"]
        flood = [
            await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            for _ in range(5)
        ]
        refused = {"kind": "vehicle", "reason": "max_connections_per_peer"}

        async def two_refused() -> bool:
            return sample(gw, "nev_gateway_refused_total", **refused) == 2

        await ps.until(two_refused, timeout_s=10, what="two connections refused")
        assert await flood[-1][0].read() == b""  # closed at accept
        reader, writer = await connect(port)
        hello = login(VIN)
        writer.write(hello)
        assert await read_answer(reader) == reply(hello, 0x01)
        # A connection of the address that closes gives its slot back.
        await close(flood[0][1])
        await ps.until(lambda: _open(gw, 3), timeout_s=10, what="the closed one forgotten")
        reader2, writer2 = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        other = login("LNEVGATE000000002")
        writer2.write(other)
        assert await read_answer(reader2) == reply(other, 0x01)
        assert sample(gw, "nev_gateway_refused_total", **refused) == 2
        await close(writer, writer2, *(w for _, w in flood[1:]))


async def test_a_stranger_rate_paused_by_its_own_bursts_still_meets_the_login_timeout(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # 2,000 frames at 10 frames/s: throttled for ~200 s. The sweep skipped every paused
    # connection, so a connection could stay unlogged as long as it kept itself throttled.
    settings = settings_for(
        kafka_bootstrap, unique_topic(1, "gw"), login_timeout_s=0.5, max_frames_per_s=10.0
    )
    async with running(settings) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        writer.write(frame(2016, 0x07, VIN, b"") * 2000)
        await asyncio.wait_for(reader.read(), 30)  # its answers, then the close
        assert (
            sample(gw, "nev_gateway_connections_closed_total", kind="vehicle", why="login_timeout")
            == 1
        )
        assert sample(gw, "nev_gateway_refused_total", kind="vehicle", reason="rate_limited") >= 1
        await close(writer)


async def _open(gw: Gateway, n: int) -> bool:
    return len(gw.connections) == n


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_session(
    kafka_bootstrap: str, unique_topic: Callable[..., str], certificate: tuple[Path, Path]
) -> None:
    import ssl

    cert, key = certificate
    topic = unique_topic(1, "gw")
    settings = settings_for(kafka_bootstrap, topic, tls_certfile=str(cert), tls_keyfile=str(key))
    client = ssl.create_default_context(cafile=str(cert))
    async with running(settings) as gw:
        reader, writer = await connect(gw.ports["vehicle"], client)
        writer.write(login(VIN, 2025))
        assert await read_answer(reader) == reply(login(VIN, 2025), 0x01)
        await close(writer)
        plain_reader, plain_writer = await connect(gw.ports["vehicle"])
        plain_writer.write(login(VIN))  # not TLS: the handshake fails, nothing produced
        assert await plain_reader.read() == b""
        await close(plain_writer)
    records = await ps.read_topic(kafka_bootstrap, topic, expect=1)
    assert [r.value for r in records] == [login(VIN, 2025)]


async def test_graceful_stop_answers_what_was_in_flight(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(1, "gw")
    async with running(settings_for(kafka_bootstrap, topic)) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        writer.write(login(VIN))
        await ps.until(lambda: _produced_or_pending(gw), timeout_s=10, what="login read")
    # stop() returned: the login was acknowledged and answered before the connection closed
    assert await read_answer(reader) == reply(login(VIN), 0x01)
    assert await reader.read() == b""
    await close(writer)


async def _produced_or_pending(gw: Gateway) -> bool:
    return sample(gw, "nev_gateway_frames_received_total", kind="vehicle", command="login") == 1


async def test_a_new_login_replaces_the_old_connection(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    async with running(settings_for(kafka_bootstrap, unique_topic(1, "gw"))) as gw:
        old_reader, old_writer = await connect(gw.ports["vehicle"])
        old_writer.write(login(VIN))
        assert await read_answer(old_reader) == reply(login(VIN), 0x01)
        reader, writer = await connect(gw.ports["vehicle"])
        writer.write(login(VIN, seq=2))
        assert await read_answer(reader) == reply(login(VIN, seq=2), 0x01)
        assert await old_reader.read() == b""  # Annex B: the new connection replaces the old
        hb = frame(2016, 0x07, VIN, b"")
        writer.write(hb)
        assert await read_answer(reader) == reply(hb, 0x01, b"")
        assert sample(gw, "nev_gateway_connections_closed_total", kind="vehicle",
                      why="replaced") == 1  # fmt: skip
        await close(old_writer, writer)


async def test_a_connection_that_logs_in_again_as_another_gives_up_the_first_identity(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # Before, the first identity stayed bound to the connection: a later login of it on
    # another connection closed this one as "replaced", and the binding outlived the close.
    other = "LNEVGATE000000002"
    async with running(settings_for(kafka_bootstrap, unique_topic(1, "gw"))) as gw:
        moved_reader, moved_writer = await connect(gw.ports["vehicle"])
        for vin in (VIN, other):
            moved_writer.write(login(vin))
            assert await read_answer(moved_reader) == reply(login(vin), 0x01)
        reader, writer = await connect(gw.ports["vehicle"])
        writer.write(login(VIN, seq=2))
        assert await read_answer(reader) == reply(login(VIN, seq=2), 0x01)
        hb = frame(2016, 0x07, other, b"")
        moved_writer.write(hb)  # still open: it is the other identity's connection now
        assert await read_answer(moved_reader) == reply(hb, 0x01, b"")
        assert sample(gw, "nev_gateway_connections_closed_total", kind="vehicle",
                      why="replaced") == 0  # fmt: skip
        await close(moved_writer, writer)
        await ps.until(lambda: _open(gw, 0), timeout_s=10, what="both connections gone")
        assert gw._bound == {}  # nothing left behind by closed connections


async def test_half_close_gets_the_answers_of_what_was_sent(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(1, "gw")
    async with running(settings_for(kafka_bootstrap, topic)) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        logout = frame(2025, 0x04, VIN, T + b"\x00\x01")
        writer.write(login(VIN, 2025) + realtime(VIN, 2025, 1) + logout)
        writer.write_eof()  # a client piping a capture: everything sent, then half-close
        assert await read_answer(reader) == reply(login(VIN, 2025), 0x01)
        assert await read_answer(reader) == reply(logout, 0x01)
        assert await reader.read() == b""  # closed once everything was answered
        await close(writer)
    records = await ps.read_topic(kafka_bootstrap, topic, expect=3)
    assert [r.value for r in records] == [login(VIN, 2025), realtime(VIN, 2025, 1), logout]
