"""The T/CEC 102 HTTP receiver of ``nev-ingest gateway``: charging operators' pushes to Kafka.

    params = params_from_settings(settings, gateway_id="gw-1")
    if params is not None:
        server = await start_tcec(params, producer, registry)   # ... await server.close()

docs/gateway.md, "T/CEC 102 receiver", describes the envelope, the checks and their Ret codes.
"""

from __future__ import annotations

from ingest.config.nat64 import nat64_networks
from ingest.config.settings import Settings
from ingest.gateway.tcec.envelope import EnvelopeError, OperatorSecrets, Ret
from ingest.gateway.tcec.operators import OperatorsError, load_operators
from ingest.gateway.tcec.server import NOTIFICATIONS, TcecParams, TcecServer, start_tcec
from ingest.pipeline.timewindow import time_window

__all__ = [
    "NOTIFICATIONS",
    "EnvelopeError",
    "OperatorSecrets",
    "OperatorsError",
    "Ret",
    "TcecParams",
    "TcecServer",
    "params_from_settings",
    "start_tcec",
]


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - empty host: every address


def params_from_settings(settings: Settings, *, gateway_id: str) -> TcecParams | None:
    """The receiver's parameters, or None when ``tcec.listen`` is empty (receiver off).
    Raises ``OperatorsError`` (one line) when the operator secrets cannot be used."""
    t = settings.tcec
    if not t.listen:
        return None
    operators = load_operators(t.operators_file, t.operator_secrets)
    if not operators:
        raise OperatorsError(
            "tcec.listen is set but no operator is configured: set tcec.operators_file "
            "(or tcec.operator_secrets)"
        )
    host, port = split_listen(t.listen)
    return TcecParams(
        host=host,
        port=port,
        path_prefix=t.path_prefix,
        topic=settings.kafka.topic_tcec,
        operators=operators,
        token_key=t.token_key.encode() or None,
        token_lifetime_s=t.token_lifetime_s,
        clock_skew_s=t.clock_skew_s,
        replay_window=t.replay_window,
        max_body_bytes=t.max_body_bytes,
        max_in_flight=t.max_in_flight,
        token_requests_per_peer=t.token_requests_per_peer,
        max_connections=t.max_connections,
        max_connections_per_peer=t.max_connections_per_peer,
        header_timeout_s=t.header_timeout_s,
        read_timeout_s=t.read_timeout_s,
        produce_timeout_s=t.produce_timeout_s,
        nat64=nat64_networks("gateway.nat64_prefixes", settings.gateway.nat64_prefixes),
        gateway_id=gateway_id,
        window=time_window(settings),
    )
