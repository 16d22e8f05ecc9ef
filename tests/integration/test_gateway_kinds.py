"""The charger and battery listeners: each kind's frames on its own raw topic, keyed as
docs/kafka.md says (the charger code; a pack's full 24-character GB/T 34014 code), answered as
the vehicle's; a swap station's one connection sends for many packs; a frame that breaks the
charger identity rule is refused with the error flag and dead-lettered."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from contract.clock import CHINA_TZ
from devtools.sim.envelope import frame, reseal
from ingest.config import KafkaSettings, Settings
from ingest.config.gateway_settings import GatewaySettings
from tests.integration import kinds_frames as kf
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import (
    close,
    connect,
    read_answer,
    reply,
    running,
)

pytestmark = pytest.mark.integration

TS = datetime(2026, 12, 6, 15, 30, 45, tzinfo=CHINA_TZ)
PACK2 = kf.PACK[:-2] + "43"


async def test_charger_and_battery_listeners(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    chg, bat, dlq = unique_topic(1, "chg"), unique_topic(2, "bat"), unique_topic(1, "dlq")
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=kafka_bootstrap, topic_charger=chg, topic_battery=bat, topic_dlq=dlq
        ),
        gateway=GatewaySettings(
            listen_vehicle="", listen_charger="127.0.0.1:0", listen_battery="127.0.0.1:0"
        ),
    )
    async with running(settings) as gw:
        assert set(gw.ports) == {"charger", "battery"}
        reader, writer = await connect(gw.ports["charger"])
        pile_login, _ = kf.charger_login(TS, kf.connector(1))
        # an OperatorID in lower case breaks the charger identity rule
        bad = reseal(pile_login[:4] + kf.CHARGER.lower().encode() + pile_login[21:])
        realtime, _ = kf.charger_realtime(TS, kf.connector(1))
        writer.write(pile_login + realtime + frame(2016, 0x07, kf.CHARGER, b""))
        assert await read_answer(reader) == reply(pile_login, 0x01)
        assert await read_answer(reader) == reply(frame(2016, 0x07, kf.CHARGER, b""), 0x01, b"")
        writer.write(bad)  # logged in: refused, and a dead letter
        assert await read_answer(reader) == reply(bad, 0x02)

        pack_reader, pack_writer = await connect(gw.ports["battery"])
        logins = [kf.pack_login(TS, code)[0] for code in (kf.PACK, PACK2)]
        data = [kf.pack_realtime(TS, code)[0] for code in (kf.PACK, PACK2)]
        pack_writer.write(b"".join(logins + data))  # one swap-station connection, two packs
        answers = {await read_answer(pack_reader) for _ in logins}
        assert answers == {reply(f, 0x01) for f in logins}
        await close(writer, pack_writer)

    chg_records = await ps.read_topic(kafka_bootstrap, chg, expect=3)
    assert [r.key for r in chg_records] == [kf.CHARGER.encode()] * 3
    bat_records = await ps.read_topic(kafka_bootstrap, bat, expect=4)
    keys = {r.value: r.key for r in bat_records}
    assert keys == {
        logins[0]: kf.PACK.encode(),
        logins[1]: PACK2.encode(),
        data[0]: kf.PACK.encode(),
        data[1]: PACK2.encode(),
    }
    (letter,) = await ps.read_topic(kafka_bootstrap, dlq, expect=1)
    assert letter.value == bad and dict(letter.headers)["error.reason"] == b"bad_identity"
