"""The process's open-file limit against the connections the gateway is configured to hold.

Every connection is a file descriptor. When the limit runs out before ``max_connections``
does, accept() fails with EMFILE and the event loop (libuv under uvloop) closes each new
connection at once: devices get a TCP reset, nothing is logged or counted, and /metrics and
the Kafka producer cannot open sockets either. So at start the soft limit is raised to the
hard one, and when even that is short the gateway holds fewer connections than configured
(refused at accept like any over ``max_connections``: counted, logged) and says what to set;
one peer address then holds at most a share of those (``peer_cap``).
"""

from __future__ import annotations

import logging
import resource
from typing import Final

from ingest.errors import UserError

__all__ = ["PEER_SHARE", "RESERVED_FDS", "connection_cap", "peer_cap"]

log = logging.getLogger(__name__)

# Descriptors the process needs besides its connections: the Kafka producers' broker
# connections, /metrics and its clients, the listeners, the accounts file, the event loop's
# own (epoll, signal pipe), logs.
RESERVED_FDS: Final = 128
# When the open-file limit holds fewer connections than configured, one peer address holds at
# most this fraction of them: a per-peer limit sized for the configured total (1,000 of
# 200,000) let one address take most of what the descriptors allow, and a few take all.
PEER_SHARE: Final = 0.1


def connection_cap(max_connections: int, other_fds: int = 0) -> int:
    """The connections the TCP listeners may hold: ``max_connections``, or fewer when the
    open-file limit (raised to its hard limit here) cannot take them plus ``RESERVED_FDS`` and
    ``other_fds`` (the T/CEC receiver's connections). A one-line ``UserError`` when not even
    one connection fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        # The hard limit is the ceiling an unprivileged process may raise itself to.
        target = hard if hard != resource.RLIM_INFINITY else max(soft, _nr_open())
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d (%s)", soft, hard, exc)
    need = max_connections + RESERVED_FDS + other_fds
    if soft == resource.RLIM_INFINITY or soft >= need:
        return max_connections
    cap = soft - RESERVED_FDS - other_fds
    what = (
        f"the open-file limit is {soft} (hard limit {hard}) but gateway.max_connections = "
        f"{max_connections} needs {need} (with {RESERVED_FDS} for Kafka, metrics and files"
        + (f" and tcec.max_connections = {other_fds}" if other_fds else "")
        + "): raise the limit (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) to "
        f"{need} or lower gateway.max_connections"
        + (" / tcec.max_connections" if other_fds else "")
    )
    if cap < 1:
        raise UserError(what)
    log.warning("%s; holding at most %d connections until then", what, cap)
    return cap


def peer_cap(per_peer: int, max_connections: int, cap: int) -> int:
    """The connections one peer address may hold: ``per_peer``, or, when the open-file limit
    cut the configured ``max_connections`` down to ``cap``, at most ``PEER_SHARE`` of ``cap``
    (at least 1), logged once. A ``per_peer`` of ``max_connections`` or more (the per-peer
    limit turned off, e.g. behind a proxy whose address every connection has) stays off."""
    if cap >= max_connections or per_peer >= max_connections:
        return min(per_peer, cap)
    share = max(1, int(cap * PEER_SHARE))
    if per_peer <= share:
        return per_peer
    log.warning(
        "gateway.max_connections_per_peer = %d is more than %d%% of the %d connections the "
        "open-file limit lets the listeners hold: one address holds at most %d until the "
        "limit is raised, so that a few cannot take every connection",
        per_peer,
        round(PEER_SHARE * 100),
        cap,
        share,
    )
    return share


def _nr_open() -> int:
    """The kernel's ceiling of a process's open files (Linux), when the hard limit is none."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1_048_576
