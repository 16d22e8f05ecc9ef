"""The T/CEC 102 envelope without I/O: known vectors made by other implementations (RFC 2202,
openssl), round trips, and every way a request fails with its Ret; tokens, replay window and
the operator secrets file."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from ingest.gateway.tcec.envelope import (
    Envelope,
    EnvelopeError,
    OperatorSecrets,
    Ret,
    answer,
    decrypt,
    encrypt,
    open_data,
    parse_envelope,
    request,
    sign,
    verify,
)
from ingest.gateway.tcec.operators import OperatorsError, load_operators, parse_operators
from ingest.gateway.tcec.tokens import ReplayWindow, TokenIssuer
from ingest.pipeline.timewindow import TimeWindow

pytestmark = pytest.mark.unit

OP = OperatorSecrets(
    "MA01H3BQ2", "opsecret", "1234567890abcdef", "abcdef1234567890", "sigsecret1234567"
)

# Made with openssl, not with this code:
#   printf '{"OperatorID":"MA01H3BQ2","OperatorSecret":"opsecret"}' | openssl enc -aes-128-cbc \
#     -K $(printf 1234567890abcdef | xxd -p) -iv $(printf abcdef1234567890 | xxd -p) -base64 -A
#   printf "MA01H3BQ2${DATA}202601011200000001" | openssl dgst -md5 -hmac sigsecret1234567
TOKEN_REQUEST = b'{"OperatorID":"MA01H3BQ2","OperatorSecret":"opsecret"}'
TOKEN_REQUEST_DATA = (
    "u53KBt+mtGbhvkC7Wee/Lcrrup4I11V/eNQyPzMZmJKjRr3CUXBnkpzTVlRvcAq1aF/WfYQYrOf0kDogBulgMQ=="
)
TOKEN_REQUEST_SIG = "0D45B8D045E636BE9A7791A1138A1429"


def test_hmac_md5_is_rfc2202_case_2() -> None:
    assert sign("Jefe", "what do ya ", "want for nothing?") == "750C783E6AB0B503EAA86E310A5DB738"


def test_encrypt_matches_openssl() -> None:
    assert encrypt(OP, TOKEN_REQUEST) == TOKEN_REQUEST_DATA
    assert encrypt(OP, b'{"Status":0}') == "80Y7CQTWqtwMYnGhL+zu5A=="


def test_request_matches_openssl_and_opens() -> None:
    body = request(OP, TOKEN_REQUEST, "20260101120000", "0001")
    doc = orjson.loads(body)
    assert doc == {
        "OperatorID": "MA01H3BQ2",
        "Data": TOKEN_REQUEST_DATA,
        "TimeStamp": "20260101120000",
        "Seq": "0001",
        "Sig": TOKEN_REQUEST_SIG,
    }
    env = parse_envelope(body)
    verify(OP, env)
    plain, obj = open_data(OP, env)
    assert plain == TOKEN_REQUEST
    assert obj["OperatorSecret"] == "opsecret"


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000])
def test_round_trip_every_padding(size: int) -> None:
    plain = bytes(range(256))[:size] * 1
    assert decrypt(OP, encrypt(OP, plain)) == plain


def test_a_lower_case_sig_is_accepted() -> None:
    env = parse_envelope(request(OP, b"{}", "20260101120000", "0002"))
    verify(OP, Envelope(env.operator_id, env.data, env.timestamp, env.seq, env.sig.lower()))


WRONG_KEY = OperatorSecrets("MA01H3BQ2", "o", "0000000000000000", "abcdef1234567890", "s")


def _ret(exc: pytest.ExceptionInfo[EnvelopeError]) -> Ret:
    return exc.value.ret


@pytest.mark.parametrize(
    "field",
    ["OperatorID", "Data", "TimeStamp", "Seq"],
)
def test_a_changed_field_breaks_the_signature(field: str) -> None:
    doc = orjson.loads(request(OP, b"{}", "20260101120000", "0003"))
    doc[field] = {"OperatorID": "MA01H3BQ3", "Data": encrypt(OP, b"[]"),
                  "TimeStamp": "20260101120001", "Seq": "0004"}[field]  # fmt: skip
    with pytest.raises(EnvelopeError) as exc:
        verify(OP, parse_envelope(orjson.dumps(doc)))
    assert _ret(exc) is Ret.BAD_SIGNATURE


def _env(**changes: str) -> bytes:
    doc = {"OperatorID": "MA01H3BQ2", "Data": "x", "TimeStamp": "20260101120000", "Seq": "0001",
           "Sig": "A", **changes}  # fmt: skip
    return orjson.dumps({k: v for k, v in doc.items() if v != "-"})


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (_env(Sig="-"), "Sig is required"),
        (_env(OperatorID="MA01"), "9 digits / upper-case letters"),
        # the organisation code's alphabet: an account could never be scoped to lower case
        (_env(OperatorID="ma01h3bq2"), "9 digits / upper-case letters"),
        (_env(TimeStamp="2026-01-01"), "yyyy"),
        (_env(Seq="1"), "4 digits"),
    ],
)
def test_bad_envelopes_are_4003(body: bytes, why: str) -> None:
    with pytest.raises(EnvelopeError, match=why) as exc:
        parse_envelope(body)
    assert _ret(exc) is Ret.BAD_PARAMETER


def test_a_numeric_seq_is_read_as_its_four_digits() -> None:
    doc = orjson.loads(request(OP, b"{}", "20260101120000", "0042"))
    doc["Seq"] = 42
    verify(OP, parse_envelope(orjson.dumps(doc)))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("!!!", "not Base64"),
        ("AAAA", "whole AES blocks"),
        (encrypt(WRONG_KEY, b"{}"), "does not decrypt"),
        (encrypt(OP, b"{not json"), "not JSON"),
        (encrypt(OP, b"[1]"), "not a JSON object"),
    ],
)  # fmt: skip
def test_data_that_does_not_open_is_4003(data: str, why: str) -> None:
    env = Envelope("MA01H3BQ2", data, "20260101120000", "0001", "")
    with pytest.raises(EnvelopeError, match=why) as exc:
        open_data(OP, env)
    assert _ret(exc) is Ret.BAD_PARAMETER


def test_answer_is_signed_over_ret_msg_data() -> None:
    doc = orjson.loads(answer(OP, Ret.OK, "ok", {"Status": 0}))
    assert doc["Data"] == "80Y7CQTWqtwMYnGhL+zu5A=="
    assert doc["Sig"] == sign(OP.sig_secret, "0", "ok", doc["Data"])
    unsigned = orjson.loads(answer(None, Ret.BAD_PARAMETER, "unknown OperatorID", None))
    assert unsigned == {"Ret": 4003, "Msg": "unknown OperatorID", "Data": "", "Sig": ""}


def test_secrets_never_show_in_repr() -> None:
    assert "opsecret" not in repr(OP) and "1234567890abcdef" not in repr(OP)


def test_tokens_verify_across_issuers_with_the_same_key() -> None:
    a, b = TokenIssuer(b"k" * 32, 60), TokenIssuer(b"k" * 32, 60)
    token, lifetime = a.issue("MA01H3BQ2", 1000.0)
    assert lifetime == 60
    assert b.check(token, "MA01H3BQ2", 1059.0) is None
    assert b.check(token, "MA01H3BQ2", 1060.0) == "token expired: call query_token"
    assert b.check(token, "MA01H3BQ3", 1001.0) == "token belongs to another OperatorID"
    assert TokenIssuer(b"x" * 32, 60).check(token, "MA01H3BQ2", 1001.0) is not None
    assert TokenIssuer(None, 60).check(token, "MA01H3BQ2", 1001.0) is not None
    forged = token.rsplit(".", 2)[0] + ".9999999999." + token.rsplit(".", 1)[1]
    assert b.check(forged, "MA01H3BQ2", 1001.0) is not None
    assert b.check("garbage", "MA01H3BQ2", 1001.0) is not None


def test_replay_window_refuses_seen_pairs_and_stays_bounded() -> None:
    w = ReplayWindow(3)
    assert w.reserve("20260101120000", "0001")
    assert not w.reserve("20260101120000", "0001")
    w.release("20260101120000", "0001")
    assert w.reserve("20260101120000", "0001")
    for seq in ("0002", "0003", "0004"):
        assert w.reserve("20260101120000", seq)
    assert len(w) == 3
    assert w.reserve("20260101120000", "0001")  # evicted as the oldest: memory stays bounded


ENTRY = {"OperatorSecret": "o", "DataSecret": "1234567890abcdef",
         "DataSecretIV": "abcdef1234567890", "SigSecret": "s"}  # fmt: skip


def test_operators_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    path.write_bytes(orjson.dumps({"MA01H3BQ2": ENTRY}))
    os.chmod(path, 0o640)
    with pytest.raises(OperatorsError, match="chmod 600"):
        load_operators(str(path), "")
    os.chmod(path, 0o600)
    ops = load_operators(str(path), orjson.dumps({"MA01H3BQ3": ENTRY}).decode())
    assert sorted(ops) == ["MA01H3BQ2", "MA01H3BQ3"]
    with pytest.raises(OperatorsError, match="both"):
        load_operators(str(path), orjson.dumps({"MA01H3BQ2": ENTRY}).decode())


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"MA01": ENTRY}, "'MA01' is not an OperatorID"),
        # roles grant --scope (account_scopes: [A-Z0-9]{9}) could never name it: refused,
        # with the spelling to use
        # ... and says the platform must change its spelling too (it signs the lower case)
        (
            {"ma01h3bq2": ENTRY},
            "'ma01h3bq2' is not an OperatorID .*: write 'MA01H3BQ2', and have the operator's "
            "platform send MA01H3BQ2 .* every push it makes is refused",
        ),
        ({"MA01H3BQ2": {**ENTRY, "DataSecret": "short"}}, "16 bytes"),
        ({"MA01H3BQ2": {**ENTRY, "SigSecret": ""}}, "SigSecret is required"),
        ([], "expected an object"),
    ],
)
def test_bad_operator_entries_are_named(doc: object, why: str) -> None:
    with pytest.raises(OperatorsError, match=why) as exc:
        parse_operators(orjson.dumps(doc), "test")
    assert "1234567890abcdef" not in str(exc.value)


def test_every_receiver_setting_reaches_its_parameters() -> None:
    # A setting added to tcec_settings but not passed on by params_from_settings would be
    # documented and silently ignored.
    from ingest.config.load import load_settings
    from ingest.gateway.tcec import params_from_settings

    settings = load_settings(
        environ={
            "NEV_TCEC_LISTEN": "127.0.0.1:8090",
            "NEV_TCEC_OPERATOR_SECRETS": orjson.dumps({"MA01H3BQ2": ENTRY}).decode(),
            "NEV_TCEC_TOKEN_LIFETIME_S": "600",
            "NEV_TCEC_CLOCK_SKEW_S": "60",
            "NEV_TCEC_REPLAY_WINDOW": "500",
            "NEV_TCEC_MAX_BODY_BYTES": "4096",
            "NEV_TCEC_MAX_IN_FLIGHT": "7",
            "NEV_TCEC_TOKEN_REQUESTS_PER_PEER": "3",
            "NEV_TCEC_READ_TIMEOUT_S": "4.5",
            "NEV_TCEC_PRODUCE_TIMEOUT_S": "2.5",
            "NEV_GATEWAY_NAT64_PREFIXES": "2001:db8:64::/96",
            # the pipeline's time window: a push it would dead-letter is refused at once
            "NEV_STORAGE_RETENTION_DAYS": "30",
            "NEV_PIPELINE_FRAME_MAX_FUTURE_S": "90",
        }
    )
    p = params_from_settings(settings, gateway_id="gw")
    assert p is not None
    got = (
        p.token_lifetime_s, p.clock_skew_s, p.replay_window, p.max_body_bytes, p.max_in_flight,
        p.token_requests_per_peer, p.read_timeout_s, p.produce_timeout_s,
        [str(n) for n in p.nat64],
    )  # fmt: skip
    assert got == (600, 60, 500, 4096, 7, 3, 4.5, 2.5, ["2001:db8:64::/96"])
    assert p.window == TimeWindow(max_age_ms=30 * 86_400_000, max_future_ms=90_000)


@pytest.mark.parametrize(
    "token", ["\udcff.1.abc", "MA01H3BQ2.1.\udcc3", "MA01H3BQ2.1.\u00e9", "a.1.\x7f"]
)
def test_a_token_that_is_not_printable_ascii_is_not_one_of_this_platform(token: str) -> None:
    # A header's bytes that are not UTF-8 arrive as lone surrogates: .encode() raised.
    assert TokenIssuer(b"k" * 32, 60).holder(token, 1000.0) == (
        None,
        "not a token of this platform: call query_token",
    )
