"""The ``gateway`` settings section: ``nev-ingest gateway``, the GB/T 32960 TCP front door.

One listener per device kind (empty = off), TLS, the enterprise-platform accounts file, the
per-process in-flight budget (backpressure) and the per-connection limits. docs/gateway.md
explains each choice; docs/configuration.md is generated from the help texts below.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.config.bounds import MAX_TIMEOUT_S, PORT_MAX, PORT_MIN
from ingest.config.fields import Section, setting

__all__ = ["GatewaySettings"]


# A declarative table of fields like the other sections (ingest/config/settings.py).
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class GatewaySettings(Section):
    gateway_id: str = setting(
        "", "Name of this gateway in the `gateway` header of every record; empty: the host name."
    )
    listen_vehicle: str = setting(
        "0.0.0.0:32960",
        "Listener of vehicles' terminals and enterprise platforms (GB/T 32960 -> "
        "kafka.topic_vehicle); empty = off.",
    )
    listen_charger: str = setting(
        "", "Listener of charging piles (charger profile -> kafka.topic_charger); empty = off."
    )
    listen_battery: str = setting(
        "", "Listener of battery packs (pack profile -> kafka.topic_battery); empty = off."
    )
    tls_certfile: str = setting(
        "",
        "PEM certificate (chain) of the listeners; with tls_keyfile, every listener is TLS.",
        path=True,
    )
    tls_keyfile: str = setting("", "PEM private key of tls_certfile.", path=True)
    tls_cafile: str = setting(
        "",
        "PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS).",
        path=True,
    )
    accounts_file: str = setting(
        "",
        "TOML or JSON file of enterprise-platform accounts (user -> scrypt hash; maintained "
        "with `nev-ingest gateway passwd`), re-read when it changes. Empty: every platform "
        "login is refused.",
        path=True,
    )
    answer_realtime: bool = setting(
        False,
        "Also answer accepted real-time/reissue frames with success (the standard answers only "
        "errors; some OEM agreements expect an ack).",
    )
    max_connections: int = setting(
        200_000,
        "Connections one process holds; more are closed at accept. The open-file limit is "
        "raised to its hard limit at start; when that is short, fewer are held (logged).",
        minimum=1,
        maximum=10_000_000,
    )
    max_connections_per_peer: int = setting(
        1_000,
        "Connections one peer address (an IPv6 peer: its /64) holds at once; more are closed "
        "at accept, so one address cannot take every slot. Addresses behind one NAT (an OEM's "
        "private APN, carrier-grade NAT) count as one: raise it for them; max_connections "
        "turns it off. At most a tenth of the connections a short open-file limit fits.",
        minimum=1,
        maximum=10_000_000,
    )
    nat64_prefixes: tuple[str, ...] = setting(
        (),
        "IPv6 prefixes of your own NAT64 / SIIT translators (RFC 6052 network-specific "
        "prefixes: /32, /40, /48, /56, /64 or /96; comma-separated): a peer address in one "
        "counts, for max_connections_per_peer, the T/CEC receiver's per-peer limits and the "
        "refusal logs, as the IPv4 client it "
        "embeds, not as one /64. The well-known 64:ff9b::/96 always does. Empty: none.",
    )
    max_in_flight_frames: int = setting(
        5_000,
        "Frames read but not yet acknowledged by Kafka, per process; at the bound every socket "
        "stops being read until Kafka catches up. Bounds the answers' delay too (a frame waits "
        "behind at most this many); throughput needs only rate x Kafka round trip.",
        minimum=1,
        maximum=10_000_000,
    )
    max_in_flight_bytes: int = setting(
        16 * 2**20,
        "Bytes of those frames, per process (the same pause).",
        minimum=65_556,
        maximum=2**36,
    )
    max_frame_bytes: int = setting(
        65_556,
        "Largest frame accepted (the standard's maximum is 65556); larger ones are refused.",
        minimum=25,
        maximum=65_556,
    )
    max_frames_per_s: float = setting(
        50.0,
        "Frames per second one connection may send (platforms: see platform_frames_per_s); "
        "above it the connection is not read until it is back under.",
        minimum=0.1,
        maximum=1_000_000,
    )
    platform_frames_per_s: float = setting(
        20_000.0,
        "The same for an enterprise platform's connection (it forwards many vehicles).",
        minimum=0.1,
        maximum=10_000_000,
    )
    max_bytes_per_s: int = setting(
        256 * 1024,
        "Bytes per second one vehicle/charger/battery connection may send (same throttle).",
        minimum=1024,
        maximum=2**32,
    )
    platform_bytes_per_s: int = setting(
        64 * 2**20,
        "Bytes per second an enterprise platform's connection may send.",
        minimum=1024,
        maximum=2**36,
    )
    max_garbage_bytes: int = setting(
        8192,
        "Bytes outside any good frame a connection may send since its last good frame; more "
        "closes it.",
        minimum=1,
        maximum=2**30,
    )
    login_timeout_s: float = setting(
        60.0,
        "Close a connection that has not logged in this long after connecting.",
        minimum=0.1,
        maximum=MAX_TIMEOUT_S,
    )
    idle_timeout_s: float = setting(
        600.0,
        "Close a connection that sent nothing this long (the heartbeat period is 1..240 s).",
        minimum=0.1,
        maximum=MAX_TIMEOUT_S,
    )
    max_login_failures: int = setting(
        3, "Failed platform logins before the connection is closed.", minimum=1, maximum=100
    )
    peer_login_failures: int = setting(
        10,
        "Failed platform logins from one peer (an IPv4 address, an IPv6 /64), over all its "
        "connections, within peer_login_window_s; past it, that peer's logins are refused "
        "unchecked.",
        minimum=1,
        maximum=10_000,
    )
    peer_login_window_s: float = setting(
        300.0,
        "The sliding window of peer_login_failures.",
        minimum=1,
        maximum=MAX_TIMEOUT_S,
    )
    log_interval_s: float = setting(
        60.0,
        "A refusal is logged once per peer and reason in this interval (all are counted).",
        minimum=0.1,
        maximum=MAX_TIMEOUT_S,
    )
    log_lines: int = setting(
        100,
        "Refusal lines logged per log_interval_s, all peers together (one host may own many "
        "peers' addresses: the /64s of its /48); past them one line says how many were held "
        "back, and from how many peers.",
        minimum=1,
        maximum=100_000,
    )
    shutdown_timeout_s: float = setting(
        20.0,
        "On SIGTERM, time to get the in-flight frames acknowledged and answered.",
        minimum=0,
        maximum=MAX_TIMEOUT_S,
    )
    metrics_host: str = setting(
        "127.0.0.1", "Address of the gateway's /metrics, /healthz, /readyz."
    )
    metrics_port: int = setting(
        9465, "Port of the gateway's metrics server.", minimum=PORT_MIN, maximum=PORT_MAX
    )
