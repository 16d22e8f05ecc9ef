"""What a GB/T 32960 terminal or enterprise platform says to a gateway besides its data, and
how it checks the answers: vehicle login (0x01) when a frame stream does not open with one,
heartbeat (0x07), time calibration (0x08), vehicle logout (0x04), platform login (0x05) and
logout (0x06); an answer matched against the request it answers (6.3.2 of both editions).

Pure: bytes in, bytes or a verdict out; the clock comes in as epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from devtools.sim.envelope import HEADER_LEN, frame, time_bytes
from ingest.decoders.commands.session import PlatformLogin, encode_platform_login

__all__ = [
    "ANSWERED",
    "Answer",
    "check_answer",
    "edition_of",
    "heartbeat",
    "login_seq_of",
    "parse_answer",
    "platform_login",
    "platform_logout",
    "time_calibration",
    "vehicle_login",
    "vehicle_logout",
]

# Commands the platform answers by the standard (6.3.2, Annex B): logins, logouts, heartbeat,
# time calibration. Real-time and reissue data (0x02/0x03) get an answer only on error, or by
# OEM agreement; a success answer to them is counted, not required.
ANSWERED: Final = frozenset({0x01, 0x04, 0x05, 0x06, 0x07, 0x08})
SUCCESS: Final = 0x01
_TIME_SPAN: Final = slice(HEADER_LEN, HEADER_LEN + 6)
# A time-calibration answer carries the platform's clock: within this of ours is plausible.
CLOCK_SKEW_MS: Final = 120_000


def edition_of(raw: bytes) -> int:
    """2025 for a ``$$`` frame, else 2016 (a bad frame's edition does not matter)."""
    return 2025 if raw[:2] == b"$$" else 2016


def login_seq_of(raw: bytes) -> int:
    """The login serial of a vehicle login frame (after the 6-byte time), 1 if it has none."""
    at = HEADER_LEN + 6
    return int.from_bytes(raw[at : at + 2], "big") if len(raw) >= at + 2 else 1


def vehicle_login(vin: str, edition: int, now_ms: int, seq: int = 1) -> bytes:
    """A minimal vehicle login (0x01): no ICCID read, no pack codes (both editions allow n=0)."""
    unit = time_bytes(now_ms) + seq.to_bytes(2, "big") + b"0" * 20 + b"\x00"
    unit += b"" if edition == 2025 else b"\x00"  # 2016: subsystem count n=0, code length m=0
    return frame(edition, 0x01, vin, unit)


def vehicle_logout(vin: str, edition: int, now_ms: int, seq: int) -> bytes:
    """Vehicle logout (0x04): time + the serial of the current login."""
    return frame(edition, 0x04, vin, time_bytes(now_ms) + seq.to_bytes(2, "big"))


def heartbeat(vin: str, edition: int) -> bytes:
    """Heartbeat (0x07): an empty data unit (Annex B)."""
    return frame(edition, 0x07, vin, b"")


def time_calibration(vin: str, edition: int) -> bytes:
    """Terminal time calibration (0x08): an empty data unit; the answer carries the time."""
    return frame(edition, 0x08, vin, b"")


def platform_login(
    code: str, edition: int, now_ms: int, user: str, password: str, seq: int = 1
) -> bytes:
    """Platform login (0x05): the header's unique ID is the platform's ``code``."""
    body = encode_platform_login(PlatformLogin(seq, user, password, 0x01))
    return frame(edition, 0x05, code, time_bytes(now_ms) + body)


def platform_logout(code: str, edition: int, now_ms: int, seq: int) -> bytes:
    """Platform logout (0x06): time + the serial of the current platform login."""
    return frame(edition, 0x06, code, time_bytes(now_ms) + seq.to_bytes(2, "big"))


@dataclass(frozen=True, slots=True)
class Answer:
    """The fields of an answer frame that say what it answers and how."""

    command: int
    response: int
    identity: bytes  # the 17-byte unique ID, as sent
    time: bytes | None  # the 6-byte time, if the data unit has one


def parse_answer(raw: bytes) -> Answer:
    """An answer frame's command, response flag, identity and time (``raw`` is a whole frame
    the stream framer accepted: envelope and BCC are good)."""
    n = int.from_bytes(raw[22:24], "big")
    return Answer(raw[2], raw[3], raw[4:21], raw[_TIME_SPAN] if n >= 6 else None)


def check_answer(request: bytes, answer: Answer, now_ms: int) -> str | None:
    """Why ``answer`` is not the right success answer to ``request``, or None if it is: same
    command and identity, a response flag of success, the request's time kept (6.3.2) -
    except time calibration, whose answer carries the platform's clock."""
    if answer.command != request[2]:
        return "command"
    if answer.identity != request[4:21]:
        return "identity"
    if answer.response != SUCCESS:
        return f"refused_0x{answer.response:02x}"
    if answer.command == 0x08:
        if answer.time is None or not _near(answer.time, now_ms):
            return "calibration_time"
        return None
    sent = request[_TIME_SPAN] if len(request) >= HEADER_LEN + 7 else None
    if sent is not None and answer.time is not None and answer.time != sent:
        return "time"
    return None


def _near(stamp: bytes, now_ms: int) -> bool:
    for delta in range(-CLOCK_SKEW_MS, CLOCK_SKEW_MS + 1, 1000):
        if time_bytes(now_ms + delta) == stamp:
            return True
    return False
