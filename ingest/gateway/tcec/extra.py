"""The T/CEC 102 receiver as one of ``nev-ingest gateway``'s extra servers.

It gets its own acks=all producer rather than the TCP listeners' one: that producer sends in
the order frames were read, through one sender task, and an operator's HTTP push does not need
to queue behind a device's frames (or hold them up while it waits for its answer).
"""

from __future__ import annotations

import socket
from typing import Any

from ingest.config.settings import Settings
from ingest.gateway.renewal import ProducerPool, RenewingSender
from ingest.gateway.tcec.metrics import producer_replacements
from ingest.gateway.tcec.server import TcecParams, TcecServer, start_tcec
from ingest.pipeline.closing import close_within
from ingest.wiring import kafka_client_options

__all__ = ["TcecExtraServer", "tcec_extra_server"]


class TcecExtraServer:
    """Start: producer, then the HTTP server; stop: the server, then the producer."""

    def __init__(self, settings: Settings, params: TcecParams, registry: Any) -> None:
        self._settings = settings
        self._params = params
        self._registry = registry
        self._replacements = producer_replacements(registry)
        self._pool: ProducerPool | None = None
        self._server: TcecServer | None = None

    async def start(self) -> None:
        first = self._new_producer()
        await first.start()
        self._pool = ProducerPool(first, self._new_producer, on_replaced=self._replacements.inc)
        self._server = await start_tcec(self._params, RenewingSender(self._pool), self._registry)

    def _new_producer(self) -> Any:
        """A new (not started) producer; another replaces it when Kafka failed a record it had
        numbered (ingest.gateway.renewal)."""
        from aiokafka import AIOKafkaProducer

        kafka = self._settings.kafka
        return AIOKafkaProducer(
            **kafka_client_options(kafka),
            acks="all",
            enable_idempotence=True,
            max_request_size=kafka.max_request_size,
        )

    async def stop(self) -> None:
        if self._server is not None:
            # aiohttp waits up to 60 s for the requests in flight: they get the frames'
            # deadline instead, so that the producer's stop (its flush) still fits the
            # gateway's bound of this stop (ingest.gateway.server.extra_stop_s).
            await close_within(
                "the T/CEC 102 receiver's HTTP server",
                self._server.close,
                self._settings.gateway.shutdown_timeout_s,
                goes_on="its producer is stopped without it",
                undone="a push not answered yet is sent again by its operator",
            )
        if self._pool is not None:
            await self._pool.close()


def tcec_extra_server(settings: Settings, registry: Any) -> TcecExtraServer | None:
    """The receiver when ``tcec.listen`` is set, else None (not started)."""
    from ingest.gateway.tcec import params_from_settings

    gateway_id = settings.gateway.gateway_id or socket.gethostname()
    params = params_from_settings(settings, gateway_id=gateway_id)
    return None if params is None else TcecExtraServer(settings, params, registry)
