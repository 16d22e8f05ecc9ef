"""Bearer tokens of ``query_token`` that verify themselves, and the per-operator replay window.

A token is ``<OperatorID>.<expiry, epoch s>.<HMAC-SHA256 of both, Base64url>`` under the
server key ``tcec.token_key``: any gateway process with the same key accepts the tokens of
any other, so operators may be balanced across processes without sticky sessions or a shared
store. Without a key each process draws a random one at start: its tokens work on it alone
(docs/gateway.md says what that means for operators).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from typing import Final

__all__ = ["ReplayWindow", "TokenIssuer"]

_MAC_SIZE: Final = 16  # 128 bits of the HMAC: plenty against forgery, shorter headers
_EXPIRY: Final = re.compile(r"[0-9]{1,12}")


class TokenIssuer:
    """Issues and checks self-verifying tokens; the clock is passed in (pure)."""

    def __init__(self, key: bytes | None, lifetime_s: int) -> None:
        self._key = key if key else secrets.token_bytes(32)
        self.lifetime_s = lifetime_s
        self.shared = bool(key)

    def _mac(self, operator_id: str, expiry: int) -> str:
        mac = hmac.new(self._key, f"{operator_id}.{expiry}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:_MAC_SIZE]).decode().rstrip("=")

    def issue(self, operator_id: str, now_s: float) -> tuple[str, int]:
        """A token for ``operator_id`` and its lifetime in seconds (TokenAvailableTime)."""
        expiry = int(now_s) + self.lifetime_s
        return f"{operator_id}.{expiry}.{self._mac(operator_id, expiry)}", self.lifetime_s

    def holder(self, token: str, now_s: float) -> tuple[str | None, str | None]:
        """(the OperatorID ``token`` was issued to, None) when it is valid and not expired,
        else (None, why not): judged from the token alone, before a request's body is read."""
        # Printable ASCII only, as issued: aiohttp hands over a header's bytes that are not
        # UTF-8 as lone surrogates ("\udcff"), which .encode() below refuses; such a token was
        # an HTTP 500 and a traceback per request instead of Ret 4002.
        if not (token.isascii() and token.isprintable()):
            return None, "not a token of this platform: call query_token"
        parts = token.split(".")
        # ASCII digits only ("²" is a digit to str.isdigit, not to int), and no more of them
        # than an epoch second has: int() of thousands of digits is slow, or refused.
        if len(parts) != 3 or not _EXPIRY.fullmatch(parts[1]):
            return None, "not a token of this platform: call query_token"
        op, expiry_text, mac = parts
        expiry = int(expiry_text)
        if not hmac.compare_digest(mac.encode(), self._mac(op, expiry).encode()):
            return None, "token not issued by this platform: call query_token"
        if now_s >= expiry:
            return None, "token expired: call query_token"
        return op, None

    def check(self, token: str, operator_id: str, now_s: float) -> str | None:
        """None when ``token`` is this operator's and not expired, else why not."""
        op, why = self.holder(token, now_s)
        if why is None and op != operator_id:
            return "token belongs to another OperatorID"
        return why


class ReplayWindow:
    """The recent (TimeStamp, Seq) pairs of one operator, at most ``size`` of them.

    A pair is reserved while its push is in flight and kept once it was acknowledged;
    a push that failed releases it, so the operator's retry of the same body is accepted.
    Pairs older than the clock-skew window need no memory: the TimeStamp check refuses them.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()

    def reserve(self, timestamp: str, seq: str) -> bool:
        """False when the pair was seen (a replay); else remember it."""
        pair = (timestamp, seq)
        if pair in self._pairs:
            return False
        self._pairs[pair] = None
        if len(self._pairs) > self._size:
            self._pairs.popitem(last=False)  # the oldest: bounded memory per operator
        return True

    def release(self, timestamp: str, seq: str) -> None:
        self._pairs.pop((timestamp, seq), None)

    def __len__(self) -> int:
        return len(self._pairs)
