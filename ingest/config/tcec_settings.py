"""The ``tcec`` settings section: the T/CEC 102 HTTP receiver of ``nev-ingest gateway``.

Charging operators push to it (docs/gateway.md, "T/CEC 102 receiver"); it puts each push on
``kafka.topic_tcec``. ``ingest.config.settings`` assembles it with the other sections.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.config.bounds import MAX_TIMEOUT_S
from ingest.config.fields import Pattern, Section, setting

__all__ = ["TcecSettings"]

LISTEN: Pattern = Pattern(
    r"|[^\s:]*:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}",
    "host:port ([v6]:port for IPv6; port 0 picks a free one), or empty for off",
)
PATH_PREFIX: Pattern = Pattern(
    r"(/[A-Za-z0-9._~-]+)*", "a URL path of segments ('/evcs'), or empty for the root"
)


# A declarative table of fields like the other sections (ingest/config/settings.py).
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class TcecSettings(Section):
    listen: str = setting(
        "",
        "Address of the T/CEC 102 HTTP receiver (host:port); empty: not started.",
        pattern=LISTEN,
        example="0.0.0.0:8090",
    )
    path_prefix: str = setting(
        "/evcs",
        "Path before /v{version}/{interface} (query_token, notification_*).",
        pattern=PATH_PREFIX,
    )
    operators_file: str = setting(
        "",
        "JSON file of each OperatorID's OperatorSecret, DataSecret, DataSecretIV and SigSecret "
        "(docs/gateway.md); refused when group or others may read it.",
        path=True,
    )
    operator_secrets: str = setting(
        "",
        "The same JSON inline (e.g. from NEV_TCEC_OPERATOR_SECRETS), added to operators_file.",
        secret=True,
    )
    token_key: str = setting(
        "",
        "Key that signs the bearer tokens, so every gateway process accepts every other's; "
        "empty: a random key per process (tokens work on the process that issued them).",
        secret=True,
    )
    token_lifetime_s: int = setting(
        7200, "Lifetime of a query_token token (TokenAvailableTime).", minimum=60, maximum=604_800
    )
    clock_skew_s: int = setting(
        300,
        "A request whose TimeStamp is further than this from the gateway's clock is refused.",
        minimum=10,
        maximum=86_400,
    )
    replay_window: int = setting(
        10_000,
        "Recent (TimeStamp, Seq) pairs remembered per operator to refuse replays.",
        minimum=100,
        maximum=1_000_000,
    )
    max_body_bytes: int = setting(
        262_144,
        "Largest request body; keep its decrypted Data under kafka.max_record_bytes.",
        minimum=1024,
        maximum=16 * 2**20,
    )
    max_in_flight: int = setting(
        1024,
        "Pushes handled at once; more are answered Ret -1 (busy) unread, so memory stays "
        "under max_in_flight x max_body_bytes while Kafka is slow (query_token requests have "
        "32 slots of their own).",
        minimum=1,
        maximum=1_000_000,
    )
    token_requests_per_peer: int = setting(
        0,
        "query_token requests handled at once per peer address (an IPv6 peer: its /64; of the 32 "
        "token slots); 0: no such limit. Set it (2, say) when operators connect to the receiver "
        "directly; behind a TLS-terminating proxy every request has the proxy's address.",
        minimum=0,
        maximum=32,
    )
    max_connections: int = setting(
        4096,
        "Connections the receiver holds at once (idle keep-alive ones included); more are "
        "closed at accept. Counted against the open-file limit with gateway.max_connections.",
        minimum=1,
        maximum=1_000_000,
    )
    max_connections_per_peer: int = setting(
        1024,
        "Connections one peer address (an IPv6 peer: its /64) holds at once. Behind a "
        "TLS-terminating proxy every connection is the proxy's: set it to max_connections.",
        minimum=1,
        maximum=1_000_000,
    )
    header_timeout_s: float = setting(
        10.0,
        "Longest wait for a request's line and headers: from the connection's start, or from "
        "the previous answer on a kept-alive connection (which is then closed when idle).",
        minimum=0.1,
        maximum=MAX_TIMEOUT_S,
    )
    read_timeout_s: float = setting(
        10.0,
        "Longest wait for a request's body once its headers came; then the answer is Ret 4003. "
        "A client that sends its body slowly, or never, holds a request slot only that long.",
        minimum=0.1,
        maximum=MAX_TIMEOUT_S,
    )
    produce_timeout_s: float = setting(
        10.0,
        "Longest wait for Kafka to acknowledge a push; then the answer is Ret -1 (busy).",
        minimum=0.1,
        maximum=MAX_TIMEOUT_S,
    )
