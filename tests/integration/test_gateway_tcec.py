"""The T/CEC 102 receiver end to end: a real aiohttp client against the real server and the
real dev broker. Every accepted push is read back from the topic and decoded by the
pipeline's own adapter; every refused one leaves the topic's end offsets where they were."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from contract.clock import CHINA_TZ
from ingest.gateway.tcec import TcecParams, TcecServer, start_tcec
from ingest.gateway.tcec import server as tcec_server
from ingest.gateway.tcec.envelope import OperatorSecrets, decrypt, request, sign
from ingest.pipeline import wire
from ingest.pipeline.adapters import decode_tcec_record
from tests.integration.pipeline_support import end_offsets, read_topic, until

pytestmark = pytest.mark.integration

OP = OperatorSecrets(
    "MA01H3BQ2", "opsecret", "1234567890abcdef", "abcdef1234567890", "sigsecret1234567"
)
OTHER = OperatorSecrets("MA01H3BQ3", "other", "fedcba0987654321", "0987654321fedcba", "othersig")
CID = "MA01H3BQ2P000000101"
SEQ = "MA01H3BQ2202603011000000001"
PUSHES: dict[str, dict[str, Any]] = {
    "notification_stationStatus": {"ConnectorStatusInfo": {"ConnectorID": CID, "Status": 3}},
    "notification_equip_charge_status": {
        "StartChargeSeq": SEQ, "StartChargeSeqStat": 2, "ConnectorID": CID,
        "ConnectorStatus": 3, "CurrentA": 125.5, "VoltageA": 380.0, "Soc": 55.5,
        "StartTime": "2026-03-01 10:00:00", "EndTime": "2026-03-01 10:05:00",
        "TotalPower": 10.5,
    },
    "notification_charge_order_info": {
        "StartChargeSeq": SEQ, "ConnectorID": CID, "StartTime": "2026-03-01 10:00:00",
        "EndTime": "2026-03-01 10:45:00", "TotalPower": 40.0, "TotalElecMoney": 30.0,
        "TotalSeviceMoney": 10.0, "TotalMoney": 40.0, "StopReason": 0,
    },
    "notification_stationInfo": {
        "StationInfo": {"StationID": "ST0001", "EquipmentInfos": [{
            "EquipmentID": "EQ0001", "ConnectorInfos": [{
                "ConnectorID": CID, "ConnectorType": 4, "VoltageUpperLimits": 750,
                "VoltageLowerLimits": 200, "Current": 250, "Power": 120.0,
            }],
        }]},
    },
}  # fmt: skip
KEYS = {
    "notification_stationStatus": f"MA01H3BQ2:{CID}",
    "notification_equip_charge_status": f"MA01H3BQ2:{CID}",
    "notification_charge_order_info": f"MA01H3BQ2:{CID}",
    "notification_stationInfo": "MA01H3BQ2",
}


def _header(rec: Any, name: str) -> bytes:
    value = wire.header(rec.headers, name)
    assert value is not None, name
    return value


class Clock:
    """The receiver's wall clock, moved by the test (token expiry without waiting)."""

    def __init__(self) -> None:
        self.now = datetime.now(CHINA_TZ).timestamp()

    def __call__(self) -> float:
        return self.now

    def stamp(self) -> str:
        return datetime.fromtimestamp(self.now, CHINA_TZ).strftime("%Y%m%d%H%M%S")


@dataclass
class Rig:
    server: TcecServer
    session: aiohttp.ClientSession
    kafka: str
    topic: str
    clock: Clock
    registry: CollectorRegistry
    seq: int = 0

    def body(self, data: dict[str, Any] | bytes, op: OperatorSecrets = OP) -> bytes:
        self.seq += 1
        raw = data if isinstance(data, bytes) else orjson.dumps(data)
        return request(op, raw, self.clock.stamp(), f"{self.seq:04d}")

    async def post(
        self, interface: str, body: bytes, token: str | None = None, op: OperatorSecrets = OP
    ) -> tuple[int, str, dict[str, Any] | None]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{self.server.url()}/{interface}"
        async with self.session.post(url, data=body, headers=headers) as resp:
            assert resp.status == 200
            doc = orjson.loads(await resp.read())
        data = None
        if doc["Data"]:
            # The answer is signed over Ret + Msg + Data with the operator's SigSecret.
            assert doc["Sig"] == sign(op.sig_secret, str(doc["Ret"]), doc["Msg"], doc["Data"])
            data = orjson.loads(decrypt(op, doc["Data"]))
        return doc["Ret"], doc["Msg"], data

    async def token(self, op: OperatorSecrets = OP) -> str:
        secret = {"OperatorID": op.operator_id, "OperatorSecret": op.operator_secret}
        ret, _, data = await self.post("query_token", self.body(secret, op), op=op)
        assert ret == 0 and data is not None and data["SuccStat"] == 0
        token: str = data["AccessToken"]
        return token

    async def produced(self) -> int:
        return sum((await end_offsets(self.kafka, self.topic)).values())

    def answered(self, interface: str, ret: int) -> float:
        value = self.registry.get_sample_value(
            "nev_gateway_tcec_requests_total", {"interface": interface, "ret": str(ret)}
        )
        return value or 0.0


async def start_rig(
    kafka: str, topic: str, **overrides: Any
) -> tuple[AIOKafkaProducer, TcecServer, CollectorRegistry, Clock]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    clock, registry = Clock(), CollectorRegistry()
    params = TcecParams(
        host="127.0.0.1",
        port=0,
        path_prefix="/evcs",
        topic=topic,
        operators={OP.operator_id: OP, OTHER.operator_id: OTHER},
        token_key=b"test-key",
        gateway_id="gw-test",
        clock=clock,
        **overrides,
    )
    return producer, await start_tcec(params, producer, registry), registry, clock


@pytest.fixture
async def rig(kafka_bootstrap: str, unique_topic: Callable[..., str]) -> AsyncIterator[Rig]:
    topic = unique_topic(partitions=3)
    producer, server, registry, clock = await start_rig(kafka_bootstrap, topic)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            yield Rig(server, session, kafka_bootstrap, topic, clock, registry)
    finally:
        await server.close()
        await producer.stop()


async def test_token_then_every_interface_lands_on_the_topic_as_the_pipeline_reads_it(
    rig: Rig,
) -> None:
    token = await rig.token()
    for interface, push in PUSHES.items():
        ret, msg, data = await rig.post(interface, rig.body(push), token)
        assert (ret, msg) == (0, "ok"), interface
        assert data is not None
        if interface == "notification_charge_order_info":
            assert data == {"StartChargeSeq": SEQ, "ConnectorID": CID, "ConfirmResult": 0}
        assert rig.answered(interface, 0) == 1
    records = await read_topic(rig.kafka, rig.topic, expect=len(PUSHES))
    assert len(records) == len(PUSHES)
    by_interface = {_header(r, wire.TCEC_INTERFACE).decode(): r for r in records}
    assert set(by_interface) == set(PUSHES)
    for interface, rec in by_interface.items():
        assert rec.key.decode() == KEYS[interface]
        assert orjson.loads(rec.value) == PUSHES[interface]  # the business JSON as sent
        assert wire.header(rec.headers, wire.TCEC_OPERATOR_ID) == b"MA01H3BQ2"
        assert wire.header(rec.headers, wire.GATEWAY) == b"gw-test"
        assert re.fullmatch(rb"\d{4}", _header(rec, wire.TCEC_SEQ))  # the envelope's Seq
        assert _header(rec, wire.PEER).startswith(b"127.0.0.1:")
        received = int(_header(rec, wire.RECEIVED_AT))
        assert received == int(rig.clock.now * 1000)
        rows = decode_tcec_record(rec.value, received, rec.headers)
        assert rows.operator_id == "MA01H3BQ2"
        assert rows.statuses or rows.connectors or rows.sessions
    assert rig.registry.get_sample_value("nev_gateway_tcec_produce_latency_seconds_count") == 4


async def test_a_wrong_operator_secret_gets_no_token(rig: Rig) -> None:
    body = rig.body({"OperatorID": "MA01H3BQ2", "OperatorSecret": "guess"})
    ret, _, data = await rig.post("query_token", body)
    assert ret == 0 and data is not None
    assert (data["SuccStat"], data["FailReason"], data["AccessToken"]) == (1, 2, "")


async def test_a_forged_sig_is_4001_and_nothing_is_produced(rig: Rig) -> None:
    token = await rig.token()
    doc = orjson.loads(rig.body(PUSHES["notification_stationStatus"]))
    doc["Sig"] = sign(
        "not-the-secret", doc["OperatorID"], doc["Data"], doc["TimeStamp"], doc["Seq"]
    )
    ret, _, _ = await rig.post("notification_stationStatus", orjson.dumps(doc), token)
    assert ret == 4001
    # Data signed by another operator's secret under this operator's id: forged as well.
    forged = rig.body(PUSHES["notification_stationStatus"], OTHER)
    forged = forged.replace(b"MA01H3BQ3", b"MA01H3BQ2")
    assert (await rig.post("notification_stationStatus", forged, token))[0] == 4001
    assert await rig.produced() == 0
    assert rig.answered("notification_stationStatus", 4001) == 2


async def test_missing_unknown_foreign_and_expired_tokens_are_4002(rig: Rig) -> None:
    push = PUSHES["notification_stationStatus"]
    interface = "notification_stationStatus"
    assert (await rig.post(interface, rig.body(push)))[0] == 4002
    assert (await rig.post(interface, rig.body(push), "MA01H3BQ2.9999999999.AAAA"))[0] == 4002
    other = await rig.token(OTHER)
    ret, msg, _ = await rig.post(interface, rig.body(push), other)
    assert (ret, msg) == (4002, "token belongs to another OperatorID")
    token = await rig.token()
    rig.clock.now += 7200  # the default lifetime: expired on the dot
    ret, msg, _ = await rig.post(interface, rig.body(push), token)
    assert (ret, msg) == (4002, "token expired: call query_token")
    assert await rig.produced() == 0
    assert (await rig.post(interface, rig.body(push), await rig.token()))[0] == 0
    assert await rig.produced() == 1


async def test_data_that_does_not_open_is_4003_and_bad_business_json_4004(rig: Rig) -> None:
    token = await rig.token()
    interface = "notification_stationStatus"
    doc = orjson.loads(rig.body(PUSHES[interface]))
    doc["Data"] = doc["Data"][:-8] + "AAAAAAA="  # still Base64 and signed: the padding breaks
    doc["Sig"] = sign(OP.sig_secret, doc["OperatorID"], doc["Data"], doc["TimeStamp"], doc["Seq"])
    ret, msg, _ = await rig.post(interface, orjson.dumps(doc), token)
    assert ret == 4003 and "decrypt" in msg
    ret, msg, _ = await rig.post(interface, rig.body(b"{not json"), token)
    assert (ret, msg) == (4003, "the decrypted Data is not JSON")
    ret, msg, _ = await rig.post(interface, rig.body({"ConnectorStatusInfo": {"Status": 3}}), token)
    assert ret == 4004 and msg.startswith("missing_field:")
    ret, msg, _ = await rig.post(interface, b'{"OperatorID": "MA01H3BQ2"}', token)
    assert ret == 4003
    assert await rig.produced() == 0


async def test_a_push_dated_outside_the_pipelines_time_window_is_4004_bad_time(rig: Rig) -> None:
    # The pipeline would dead-letter these as time_out_of_window after an answer of 0: the
    # receiver judges the rows' time by the same window (storage.retention_days back, never
    # before 2000; pipeline.frame_max_future_s ahead) and refuses them at once.
    token = await rig.token()
    now = datetime.fromtimestamp(rig.clock.now, CHINA_TZ)

    def at(seconds: float) -> str:
        return (now + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")

    status, order = "notification_equip_charge_status", "notification_charge_order_info"
    refused = [
        (status, {"StartTime": at(0), "EndTime": at(1200)}, "ahead of the platform's clock"),
        (order, {"StartTime": "2099-01-01 00:00:00", "EndTime": "2099-01-01 00:10:00"}, "ahead"),
        (order, {"StartTime": "2020-01-01 00:00:00", "EndTime": "2020-01-01 00:10:00"}, "older"),
    ]
    for interface, times, why in refused:
        ret, msg, _ = await rig.post(interface, rig.body({**PUSHES[interface], **times}), token)
        assert ret == 4004 and msg.startswith("bad_time: the push's time ") and why in msg, msg
    assert await rig.produced() == 0
    # within the window (a sample 5 minutes ahead of the clock, under the 10 allowed): stored
    ok = {**PUSHES[status], "StartTime": at(0), "EndTime": at(300)}
    assert (await rig.post(status, rig.body(ok), token))[:2] == (0, "ok")
    assert await rig.produced() == 1


async def test_a_replayed_seq_and_a_stale_timestamp_are_refused(rig: Rig) -> None:
    token = await rig.token()
    interface = "notification_stationStatus"
    body = rig.body(PUSHES[interface])
    assert (await rig.post(interface, body, token))[0] == 0
    ret, msg, _ = await rig.post(interface, body, token)
    assert ret == 4003 and "already received" in msg
    stale = request(OP, orjson.dumps(PUSHES[interface]), "20200101000000", "0001")
    ret, msg, _ = await rig.post(interface, stale, token)
    assert ret == 4003 and "NTP" in msg
    assert await rig.produced() == 1


async def test_a_body_over_the_limit_is_4003(rig: Rig) -> None:
    token = await rig.token()
    big = rig.body({"ConnectorStatusInfo": {"ConnectorID": CID, "Status": 3}, "x": "y" * 300_000})
    ret, msg, _ = await rig.post("notification_stationStatus", big, token)
    assert ret == 4003 and "over 262144 bytes" in msg
    assert await rig.produced() == 0


@pytest.mark.parametrize(
    "token",
    ["a.\u00b2.b", "MA01H3BQ2." + "9" * 5000 + ".AAAA", "..", "MA01H3BQ2.-5.AAAA"],
)
async def test_a_malformed_token_is_4002_not_a_500(rig: Rig, token: str) -> None:
    # "²" is a digit to str.isdigit but not to int(), and int() refuses 5,000 digits: both
    # were a 500 and a logged traceback ("a bug"), open to anyone.
    interface = "notification_stationStatus"
    ret, msg, _ = await rig.post(interface, rig.body(PUSHES[interface]), token)
    assert (ret, msg) == (4002, "not a token of this platform: call query_token")
    assert rig.answered(interface, 500) == 0


@pytest.mark.parametrize("token", [b"\xff.1.abc", b"MA01H3BQ2.1.\xc3", b"MA01H3BQ2.1.\xc3\xa9"])
async def test_a_token_that_is_not_printable_ascii_is_4002_not_a_500(
    rig: Rig, token: bytes
) -> None:
    # Raw bytes on a socket: aiohttp's client sends no header that is not UTF-8. The server
    # hands such bytes over as lone surrogates, which the token's MAC check could not encode:
    # HTTP 500 text/plain, a traceback per request, the request not counted.
    interface = "notification_stationStatus"
    body = rig.body(PUSHES[interface])
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
    try:
        writer.write(
            f"POST /evcs/v1.0/{interface} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + b"Authorization: Bearer "
            + token
            + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head, _, payload = (await reader.read()).partition(b"\r\n\r\n")
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 "), head
    doc = orjson.loads(payload)
    assert (doc["Ret"], doc["Msg"]) == (4002, "not a token of this platform: call query_token")
    assert rig.answered(interface, 4002) == 1
    assert await rig.produced() == 0


async def test_an_unhashable_connector_id_the_interface_does_not_read_is_no_500(
    rig: Rig,
) -> None:
    # stationInfo does not read ConnectorStatusInfo, but the record key looked at it.
    push = dict(PUSHES["notification_stationInfo"], ConnectorStatusInfo=[{"ConnectorID": ["x"]}])
    ret, _, _ = await rig.post("notification_stationInfo", rig.body(push), await rig.token())
    assert ret == 0
    (record,) = await read_topic(rig.kafka, rig.topic, expect=1)
    assert record.key == b"MA01H3BQ2"


async def _headers_only(
    port: int, interface: str, token: str | None = None, source: str = "127.0.0.1"
) -> socket.socket:
    """A client (from address ``source``) that sends a request's headers, announces a body
    and never sends it."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    head = f"POST /evcs/v1.0/{interface} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000\r\n\r\n"
    sock.sendall(head.encode())
    return sock


async def test_clients_that_never_send_their_body_do_not_shut_the_operators_out(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # One push slot. Strangers send headers and then nothing: tokenless pushes are answered
    # 4002 before their body is read; token requests have slots of their own (two per address
    # here: tcec.token_requests_per_peer), and a body that does not come in time frees its
    # slot. Before, 8 such sockets
    # (with 8 slots; one with one) got every operator Ret -1 for as long as they stayed open.
    topic = unique_topic(partitions=1)
    producer, server, registry, clock = await start_rig(
        kafka_bootstrap, topic, max_in_flight=1, read_timeout_s=1.0, token_requests_per_peer=2
    )
    socks: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            rig = Rig(server, session, kafka_bootstrap, topic, clock, registry)
            token = await rig.token()
            for _ in range(8):
                socks.append(await _headers_only(server.port, "notification_stationStatus"))
                socks.append(await _headers_only(server.port, "query_token"))
            # Every stranger handled before the operator's push: 8 tokenless pushes answered,
            # 6 token requests over their address's two slots answered busy.
            await until(
                lambda: _answered(registry, {"notification_stationStatus": 8, "query_token": 6}),
                timeout_s=30,
                what="the strangers handled",
            )
            interface = "notification_stationStatus"
            ret, _, _ = await rig.post(interface, rig.body(PUSHES[interface]), token)
            assert ret == 0, "an operator's push went through"
            # The address's token slots are held until their bodies time out; then a token
            # is issued again (the operator shares the strangers' address here).
            await until(
                lambda: _token_issued(rig), timeout_s=30, what="a token issued after the timeout"
            )
    finally:
        for sock in socks:
            sock.close()
        await server.close()
        await producer.stop()
    assert (
        registry.get_sample_value(
            "nev_gateway_tcec_requests_total", {"interface": "query_token", "ret": "4003"}
        )
        == 2
    ), "the two bodies that never came were answered 4003 once their time was up"


async def test_with_a_per_peer_limit_strangers_at_one_address_hold_two_token_requests(
    kafka_bootstrap: str, unique_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # query_token is open to anyone. Strangers at 127.0.0.2 hold two token requests whose
    # bodies never come (for the whole test: no body timeout interferes); an operator at
    # 127.0.0.1 still gets its token meanwhile.
    monkeypatch.setattr(tcec_server, "_TOKEN_READ_TIMEOUT_S", 60.0)
    topic = unique_topic(partitions=1)
    producer, server, registry, clock = await start_rig(
        kafka_bootstrap, topic, read_timeout_s=60.0, token_requests_per_peer=2
    )
    socks: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            rig = Rig(server, session, kafka_bootstrap, topic, clock, registry)
            for _ in range(40):  # more than all the token slots (32) together
                socks.append(await _headers_only(server.port, "query_token", source="127.0.0.2"))

            async def over_their_slots() -> bool:
                return rig.answered("query_token", -1) >= 38

            await until(over_their_slots, timeout_s=30, what="38 strangers answered busy")
            assert await rig.token()
            assert rig.answered("query_token", 4003) == 0  # the strangers still hold theirs
    finally:
        for sock in socks:
            sock.close()
        await server.close()
        await producer.stop()


async def test_a_token_request_body_is_small_also_when_chunked(rig: Rig) -> None:
    # Without a Content-Length (chunked), the token's 4 KiB limit was not applied: the body
    # was read up to tcec.max_body_bytes (256 KiB) in each of the 32 token slots.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1000

    url = f"{rig.server.url()}/query_token"
    async with rig.session.post(url, data=chunks()) as resp:
        assert resp.status == 200 and "Content-Length" not in resp.request_info.headers
        doc = orjson.loads(await resp.read())
    assert (doc["Ret"], doc["Msg"]) == (4003, "a query_token body is at most 4096 bytes")
    assert await rig.token()  # and a real one still goes through


async def _answered(registry: CollectorRegistry, at_least: dict[str, int]) -> bool:
    """Whether each interface's requests were answered ``at_least`` that many times (any Ret;
    the rig's own first token request not counted)."""
    answered: dict[str, float] = {}
    for metric in registry.collect():
        if metric.name == "nev_gateway_tcec_requests":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    i = sample.labels["interface"]
                    answered[i] = answered.get(i, 0.0) + sample.value
    answered["query_token"] = answered.get("query_token", 0.0) - 1
    return all(answered.get(i, 0.0) >= n for i, n in at_least.items())


async def _token_issued(rig: Rig) -> bool:
    secret = {"OperatorID": OP.operator_id, "OperatorSecret": OP.operator_secret}
    ret, _, data = await rig.post("query_token", rig.body(secret))
    return ret == 0 and data is not None and data["SuccStat"] == 0


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (a reset counts as closed)."""
    try:
        return await asyncio.wait_for(reader.read(), 30)  # a bound on a hang only
    except ConnectionResetError:
        return b""


async def test_a_connection_without_a_whole_request_head_is_closed_after_header_timeout(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # Half a request line, half the headers, or nothing: each held a descriptor for aiohttp's
    # default keep-alive timeout (3630 s); now tcec.header_timeout_s.
    topic = unique_topic(partitions=1)
    producer, server, registry, clock = await start_rig(
        kafka_bootstrap, topic, header_timeout_s=0.5
    )
    writers: list[asyncio.StreamWriter] = []
    try:
        readers = []
        for head in (
            b"POST /evcs/v1.0/query_tok",
            b"POST /evcs/v1.0/query_token HTTP/1.1\r\nHost: x\r\n",
            b"",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(head)
            readers.append(reader)
            writers.append(writer)
        for reader in readers:
            assert await _closed_by_server(reader) == b""  # closed, and nothing answered
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            rig = Rig(server, session, kafka_bootstrap, topic, clock, registry)
            assert await rig.token()  # a whole request in time is served as before
    finally:
        for writer in writers:
            writer.close()
        await server.close()
        await producer.stop()


async def test_one_address_holds_at_most_max_connections_per_peer(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # A stranger at 127.0.0.2 opens connections and sends nothing: past its two, each is
    # closed at accept and counted; an operator at 127.0.0.1 is served meanwhile.
    topic = unique_topic(partitions=1)
    producer, server, registry, clock = await start_rig(
        kafka_bootstrap, topic, max_connections_per_peer=2, header_timeout_s=60.0
    )
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(5):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, local_addr=("127.0.0.2", 0)
            )
            writers.append(writer)
        refused = {"reason": "max_connections_per_peer"}

        async def three_refused() -> bool:
            name = "nev_gateway_tcec_connections_refused_total"
            return registry.get_sample_value(name, refused) == 3

        await until(three_refused, timeout_s=30, what="three connections refused")
        assert await _closed_by_server(reader) == b""  # the last one, closed at accept
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            rig = Rig(server, session, kafka_bootstrap, topic, clock, registry)
            token = await rig.token()
            interface = "notification_stationStatus"
            assert (await rig.post(interface, rig.body(PUSHES[interface]), token))[0] == 0
        # A stranger's connection that closes gives its slot back (once the server saw it
        # close: until then a new one is still refused).
        writers.pop(0).close()

        async def served_again() -> bool:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, local_addr=("127.0.0.2", 0)
            )
            writers.append(writer)
            writer.write(b"POST /evcs/v1.0/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return (await _closed_by_server(reader)).startswith(b"HTTP/1.1 404 ")

        await until(served_again, timeout_s=30, what="a slot given back")
    finally:
        for writer in writers:
            writer.close()
        await server.close()
        await producer.stop()
