"""One connection's GB/T 32960 session, sans I/O: what to do with each checked frame.

A connection starts unauthenticated. On the vehicle listener it becomes a **vehicle session**
with a vehicle login (0x01: its VIN is bound to the connection) or a **platform session** with
an enterprise-platform login (0x05, user and password checked against the accounts file by the
caller: ``Verify``). Charger and battery connections log in with their profile's 0x01.

Until a login, every other frame is refused (``not_logged_in``): the standard says log in
first, and a refused command packet is answered with the error flag, so a terminal keeps the
data and sends it again after logging in (reissue) instead of believing it delivered. A
vehicle (or charger) session's data frames must carry its login's identity
(``identity_mismatch`` otherwise; a battery connection is not bound: a swap station sends for
many packs); a platform session forwards frames of any number of vehicles.

What the decision says (``Decision``):

- ``produce``: put the frame on the kind's raw topic (key ``key``), and once Kafka
  acknowledged it send the answer with ``flag`` (if any): an answer is never sent for a frame
  Kafka might still lose; if Kafka refuses it for good, the answer is ``refused_flag`` (the
  error flag for a command packet of 0x01-0x08, real-time and reissue included);
- ``answer now``: platform logout, and every refusal (error flag), which have nothing to wait for;
- ``verify``: a platform login; the caller checks the credentials (scrypt, off the event loop)
  and calls ``platform_login_done``.

Platform login frames are not produced: they carry the platform's password in clear, and no
rows. Everything else accepted is produced, heartbeats and time calibrations included (the
last-seen time of a device), and responses (flag != 0xFE) are never answered (§6.3.2).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ingest.decoders.commands.session import decode_platform_login
from ingest.decoders.envelope import EDITION_2016, EDITION_2025, HEADER_SIZE, Envelope
from ingest.decoders.errors import FrameError
from ingest.decoders.identity import vin_keyed
from ingest.gateway.answers import ERROR, SUCCESS
from ingest.gateway.kinds import GatewayKind, identify, record_key

__all__ = ["Decision", "Session", "command_name"]

_COMMAND: Final = 0xFE
LOGIN: Final = 0x01
REALTIME: Final = 0x02
REISSUE: Final = 0x03
LOGOUT: Final = 0x04
PLATFORM_LOGIN: Final = 0x05
PLATFORM_LOGOUT: Final = 0x06
HEARTBEAT: Final = 0x07
TIME_CALIBRATION: Final = 0x08
# Command packets the platform answers (success or error); 0x02/0x03 only with an error unless
# gateway.answer_realtime (B.2.1: "when the check is correct the platform does not answer").
_ANSWERED: Final = frozenset(
    {LOGIN, LOGOUT, PLATFORM_LOGIN, PLATFORM_LOGOUT, HEARTBEAT, TIME_CALIBRATION}
)
_DATA: Final = frozenset({REALTIME, REISSUE})
# Command packets answered with the error flag when refused (by the gateway, or by Kafka for
# good): 0x02/0x03 too, since silence would tell the terminal its data was accepted (B.2.1).
_ERROR_ANSWERED: Final = _ANSWERED | _DATA

# Metric label of a command byte: bounded (never the raw byte of a custom command).
_NAMES: Final = {
    LOGIN: "login",
    REALTIME: "realtime",
    REISSUE: "reissue",
    LOGOUT: "logout",
    PLATFORM_LOGIN: "platform_login",
    PLATFORM_LOGOUT: "platform_logout",
    HEARTBEAT: "heartbeat",
    TIME_CALIBRATION: "time_calibration",
    0x09: "activation",
    0x0B: "key_exchange",
    0x80: "query",
    0x81: "set",
    0x82: "control",
}

# VINs already checked on the vehicle listener. The identity rule's Python byte loop costs ~3 µs
# a frame, and a device repeats its VIN every few seconds. Only IDs that passed the VIN rule are
# kept: such an ID passes the custom-code rule too, as the same text (VIN characters are
# printable, no padding), so the entry answers for every command. One entry per vehicle (a
# process plans 100,000): bounded at ~260,000 (~40 MB at most), cleared when full.
_VIN_CACHE: Final = 1 << 18
_VINS: Final[dict[bytes, str]] = {}

# Decision actions.
PRODUCE: Final = "produce"
ANSWER: Final = "answer"
VERIFY: Final = "verify"
REFUSE: Final = "refuse"


def command_name(command: int, response: int) -> str:
    """A bounded label for metrics: the command's name, ``custom``/``other``, and
    ``_response`` for a response packet."""
    name = _NAMES.get(command) or ("custom" if command >= 0xC0 else "other")
    return name if response == _COMMAND else f"{name}_response"


class Decision(NamedTuple):
    """What to do with one frame (see the module docstring). A NamedTuple: one is built per
    frame, and a frozen dataclass's ``__init__`` costs several times a tuple's."""

    action: str
    command: str  # metric label (command_name)
    key: bytes | None = None  # record key when producing
    flag: int | None = None  # answer's response flag (after the ack when producing)
    refused_flag: int | None = None  # when producing: the answer if Kafka refuses it for good
    reason: str = ""  # refusal reason (a bounded label)
    detail: str = ""  # for the log line
    user: str = ""  # platform login: the user name to check
    password: str = ""  # platform login: the password to check (never logged)


class Session:
    """The state of one connection; ``on_frame`` decides, the caller does the I/O."""

    __slots__ = (
        "answer_realtime",
        "kind",
        "logged_in",
        "login_failures",
        "max_frame_bytes",
        "platform",
        "vin",
    )

    def __init__(
        self, kind: GatewayKind, *, max_frame_bytes: int = 65_556, answer_realtime: bool = False
    ) -> None:
        self.kind = kind
        self.max_frame_bytes = max_frame_bytes
        self.answer_realtime = answer_realtime
        self.logged_in = False
        self.platform = ""  # the account of a platform session
        self.vin = ""  # the identity a vehicle/charger session logged in with
        self.login_failures = 0

    def on_frame(self, frame: bytes) -> Decision:
        """Decide about one whole frame whose start, length and BCC the framer checked."""
        command, response = frame[2], frame[3]
        name = command_name(command, response)
        if command == 0 or not (response == _COMMAND or 0x01 <= response <= 0x07):
            # Defined by neither edition; what a false start in zero padding looks like
            # ("$$" + 22 NUL bytes passes the BCC).
            return self._refuse(name, command, response, "unknown_command", f"{command:#04x}")
        if len(frame) > self.max_frame_bytes:
            return self._refuse(name, command, response, "frame_too_large", f"{len(frame)} bytes")
        # The framer checked start, length and BCC: read the header without checking again
        # (parse_envelope would cost a third of the gateway's time per frame).
        env = Envelope(
            EDITION_2016 if frame[0] == 0x23 else EDITION_2025,
            command,
            response,
            "",
            frame[21],
            frame[22] << 8 | frame[23],
        )
        vehicle = self.kind == "vehicle"
        ident = _VINS.get(frame[4:21]) if vehicle else None
        if ident is None:
            try:
                ident = identify(self.kind, frame, env)
            except FrameError as exc:
                return self._refuse(name, command, response, exc.reason, exc.detail)
            if vehicle and vin_keyed(command, response):  # it passed the VIN rule
                if len(_VINS) >= _VIN_CACHE:
                    _VINS.clear()
                _VINS[frame[4:21]] = ident
        if response != _COMMAND:  # a terminal's reply to a query/set/control: never answered
            if not self.logged_in:
                return self._refuse(name, command, response, "not_logged_in", "a response")
            return Decision(PRODUCE, name, record_key(self.kind, frame, env, ident))
        if command == PLATFORM_LOGIN:
            return self._platform_login(frame, name, command, env.length)
        if command == PLATFORM_LOGOUT:
            if not self.platform:
                return self._refuse(name, command, response, "not_logged_in", "platform logout")
            self.logged_in, self.platform = False, ""
            return Decision(ANSWER, name, flag=SUCCESS)
        if command == LOGIN and not self.platform:
            # A swap station multiplexes many packs on one connection: packs are not bound.
            self.logged_in, self.vin = True, ident if self.kind != "battery" else ""
        elif not self.logged_in:
            return self._refuse(name, command, response, "not_logged_in", "log in first (0x01)")
        elif self.vin and ident and command in _DATA and ident != self.vin:
            detail = f"{ident} on the connection of {self.vin}"
            return self._refuse(name, command, response, "identity_mismatch", detail)
        elif command == LOGOUT and not self.platform:
            self.logged_in = False
        flag = (
            SUCCESS if command in _ANSWERED or (self.answer_realtime and command in _DATA) else None
        )
        refused = ERROR if command in _ERROR_ANSWERED else None
        return Decision(PRODUCE, name, record_key(self.kind, frame, env, ident), flag, refused)

    def platform_login_done(self, user: str, ok: bool) -> int:
        """The caller checked a ``verify`` decision's credentials: the answer's flag."""
        if ok:
            self.logged_in, self.platform, self.vin = True, user, ""
            self.login_failures = 0
            return SUCCESS
        self.login_failures += 1
        return ERROR

    def _platform_login(self, frame: bytes, name: str, command: int, length: int) -> Decision:
        if self.kind != "vehicle":
            return self._refuse(name, command, _COMMAND, "unexpected_command", "platform login")
        if self.vin:
            return self._refuse(name, command, _COMMAND, "unexpected_command", "vehicle session")
        try:
            body, _, _ = decode_platform_login(frame, HEADER_SIZE + 6, HEADER_SIZE + length)
        except FrameError as exc:
            return self._refuse(name, command, _COMMAND, exc.reason, exc.detail)
        return Decision(VERIFY, name, user=body.username, password=body.password)

    @staticmethod
    def _refuse(name: str, command: int, response: int, reason: str, detail: str) -> Decision:
        flag = ERROR if response == _COMMAND and command in _ERROR_ANSWERED else None
        return Decision(REFUSE, name, flag=flag, reason=reason, detail=detail)
