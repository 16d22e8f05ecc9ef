"""What ``nev-ingest gateway`` refuses in its settings, checked before it connects or binds.

``check_settings`` is also what ``nev-ingest config check`` runs, so that a configuration it
calls ok is one the gateway starts with (ports taken and Kafka aside).
"""

from __future__ import annotations

from ingest.config import Settings
from ingest.errors import UserError
from ingest.gateway.kinds import KINDS
from ingest.gateway.producer import batch_bytes
from ingest.gateway.server import parse_listen, tls_context

__all__ = ["check_listeners_configured", "check_settings", "produced_topics", "topic_sizes"]

# Around a frame in a record batch of its own: the batch's header (61 bytes), the record's
# varints, the key (<= 24 bytes) and the headers (received_at, gateway, peer, connection,
# platform: a few hundred bytes at most, with a long host name). Generous on purpose.
_RECORD_OVERHEAD = 2048
# aiokafka's default max_batch_size, the T/CEC receiver's producer's (ingest/gateway/tcec/extra.py).
_TCEC_BATCH_BYTES = 16384


def check_settings(settings: Settings) -> None:
    """Each listener's address, the TLS files (loaded as the listeners would), and the T/CEC
    receiver's operators; a one-line ``UserError`` naming the key otherwise."""
    from ingest.gateway.tcec import params_from_settings

    cfg = settings.gateway
    for kind in KINDS:
        listen = getattr(cfg, f"listen_{kind}")
        if listen:
            parse_listen(f"listen_{kind}", listen)
    tls_context(cfg)
    # tcec.listen's address was checked at load; this reads and checks the operators.
    params_from_settings(settings, gateway_id="check")


def check_listeners_configured(settings: Settings) -> None:
    """A gateway with no listener would start, report ready and take nothing."""
    cfg = settings.gateway
    if not any(getattr(cfg, f"listen_{kind}") for kind in KINDS) and not settings.tcec.listen:
        raise UserError(
            "the gateway has no listener: gateway.listen_vehicle, listen_charger, "
            "listen_battery and tcec.listen are all empty; set one (e.g. "
            "gateway.listen_vehicle = 0.0.0.0:32960)"
        )


def produced_topics(settings: Settings) -> dict[str, str]:
    """Every topic the gateway process produces to -> the setting that names it: the raw topic
    of each GB/T 32960 listener that is on, the dead-letter topic when one is, the T/CEC topic
    when the receiver listens. The start checks (topics exist, take the largest batch) read
    this, the one list: two copies of it had drifted apart."""
    kafka, cfg = settings.kafka, settings.gateway
    out = {
        kafka.raw_topic(kind): f"kafka.topic_{kind}"
        for kind in KINDS
        if getattr(cfg, f"listen_{kind}")
    }
    if out:
        # The frames a GB/T 32960 listener refuses go to the dead-letter topic (the T/CEC
        # receiver answers its refusals and sends none).
        out[kafka.topic_dlq] = "kafka.topic_dlq"
    if settings.tcec.listen:
        out[kafka.topic_tcec] = "kafka.topic_tcec"
    return out


def topic_sizes(settings: Settings) -> dict[str, tuple[int, str]]:
    """Per topic the gateway produces to (``produced_topics``): the largest batch it sends
    there, and the setting that makes it that large. A topic whose max.message.bytes is smaller
    refuses such a batch, and then every later batch of its partition until the producer is
    replaced (ingest.gateway.renewal): checked at start."""
    kafka, cfg = settings.kafka, settings.gateway
    frame = cfg.max_frame_bytes + _RECORD_OVERHEAD
    batch = batch_bytes(kafka.max_request_size)
    # The raw topics' batches, and the dead-letter topic's: refused frames go there through
    # the same dispatcher, in batches as large.
    raw = (
        (batch, "kafka.max_request_size (the gateway's batches are at most min(512 KiB, it))")
        if batch >= frame
        else (frame, "gateway.max_frame_bytes")
    )
    push = max(_TCEC_BATCH_BYTES, settings.tcec.max_body_bytes + _RECORD_OVERHEAD)
    tcec = (push, "tcec.max_body_bytes")
    return {
        topic: tcec if key == "kafka.topic_tcec" else raw
        for topic, key in produced_topics(settings).items()
    }
