"""What ``nev-ingest gateway`` refuses in its settings, checked before it connects or binds.

``check_settings`` is also what ``nev-ingest config check`` runs, so that a configuration it
calls ok is one the gateway starts with (ports taken and Kafka aside).
"""

from __future__ import annotations

from ingest.config import Settings
from ingest.errors import UserError
from ingest.gateway.kinds import KINDS
from ingest.gateway.server import parse_listen, tls_context

__all__ = ["check_listeners_configured", "check_settings"]


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
