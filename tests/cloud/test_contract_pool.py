"""The contract certificate pool client's socket-free parts (its URL, its request, its
reading of the pool's answers) and the `cloud serve` flags that configure it: a wrong
one is one line and exit 2, before anything starts."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugstream.cli import main
from plugstream.cloud.certificates.contract_pool import (
    MAX_ANSWER_BYTES,
    MAX_EXI_RESPONSE,
    POOL_TIMEOUT,
    ContractPoolFailure,
    check_pool_token,
    check_pool_url,
    encode_request,
    read_answer,
)
from plugstream.cloud.config import CloudConfig
from plugstream.pki.authority import CertificateAuthority

pytestmark = pytest.mark.unit

EXI = base64.b64encode(b"\x80\x98\x02\x10exi").decode()


def test_the_deadline_is_under_the_evs_five_seconds() -> None:
    assert POOL_TIMEOUT == CloudConfig().contract_pool_timeout < 5.0


@pytest.mark.parametrize(
    "url",
    [
        "https://ccp.example/v1/certificates",
        "https://ccp.example:8443/v1?tenant=cpo",
        "http://127.0.0.1:8080/pool",
        "http://localhost/pool",
        "http://[::1]:9/pool",
    ],
)
def test_a_pool_url_is_https_or_http_on_this_host(url: str) -> None:
    assert check_pool_url(url) == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://ccp.example/x", "https://"),
        ("ccp.example/x", "https://"),
        ("https:///x", "https://"),
        ("http://ccp.example/x", "not on this host"),
        ("https://user:pw@ccp.example/x", "token"),
        ("https://ccp.example:99999/x", "not a URL"),
        ("https://ccp.example:0/x", "port"),
    ],
)
def test_a_pool_url_that_cannot_be_one_is_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_pool_url(url)


def test_a_token_must_fit_in_a_header() -> None:
    assert check_pool_token("abc.DEF-123_~") == "abc.DEF-123_~"
    for bad in ("", "two words", "line\r\nX-Evil: 1", "caf\u00e9"):
        with pytest.raises(ValueError):
            check_pool_token(bad)


def test_the_request_is_the_three_fields_and_refuses_what_no_pool_could_take() -> None:
    body = orjson.loads(encode_request("urn:iso:15118:2:2013:MsgDef", "Install", EXI))
    assert body == {
        "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
        "action": "Install",
        "exiRequest": EXI,
    }
    with pytest.raises(ContractPoolFailure) as not_b64:
        encode_request("urn", "Update", "not base64!")
    assert not_b64.value.reason_code == "InvalidValue"
    with pytest.raises(ContractPoolFailure) as too_long:
        encode_request("urn", "Update", "A" * 5604)
    assert too_long.value.reason_code == "TooLargeElement"


def _answer(data: Any) -> bytes:
    return orjson.dumps(data)


def test_the_pools_answer_is_its_exi_response() -> None:
    assert read_answer(200, _answer({"exiResponse": EXI})) == EXI


@pytest.mark.parametrize(
    ("status", "body", "code", "says"),
    [
        (404, _answer({"error": "no contract"}), "NotFound", "no contract"),
        (503, _answer({"error": "maintenance\r\n"}), "PoolError", "HTTP 503: maintenance"),
        (500, b"<html>oops</html>", "PoolError", "HTTP 500: <html>oops"),
        (302, b"", "PoolError", "HTTP 302"),
        (204, b"", "PoolError", "HTTP 204"),
        (200, b"not json", "PoolError", "not JSON"),
        (200, _answer(["exiResponse"]), "PoolError", "no exiResponse"),
        (200, _answer({"exiResponse": ""}), "PoolError", "no exiResponse"),
        (200, _answer({"exiResponse": 7}), "PoolError", "no exiResponse"),
        (200, _answer({"exiResponse": "%%%"}), "PoolError", "not base64"),
        (200, _answer({"exiResponse": "A" * (MAX_EXI_RESPONSE + 4)}), "PoolError", "over 7500"),
        (200, b" " * (MAX_ANSWER_BYTES + 1), "PoolError", "bytes"),
    ],
)
def test_any_other_answer_is_a_failure_with_its_reason(
    status: int, body: bytes, code: str, says: str
) -> None:
    with pytest.raises(ContractPoolFailure) as failed:
        read_answer(status, body)
    assert failed.value.reason_code == code
    assert len(code) <= 20  # StatusInfoType.reasonCode
    assert says in str(failed.value)
    assert "\n" not in str(failed.value)


# -- plugstream cloud serve --------------------------------------------------------------


def test_cloud_serve_takes_the_pool_its_ca_and_its_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    CertificateAuthority.create().write_root(tmp_path / "ccp-root.pem")
    import plugstream.cloud.serve

    ran: list[CloudConfig] = []
    monkeypatch.setattr(plugstream.cloud.serve, "run", lambda config: ran.append(config) or 0)
    monkeypatch.setenv("PLUGSTREAM_CONTRACT_POOL_TOKEN", "s3cret")
    url = "https://ccp.example/v1/certificates"
    flags = ["--contract-pool-url", url, "--contract-pool-ca", str(tmp_path / "ccp-root.pem")]
    assert main(["cloud", "serve", *flags]) == 0
    (config,) = ran
    assert config.contract_pool_url == url
    assert config.contract_pool_token == "s3cret"
    assert config.contract_pool_ca == tmp_path / "ccp-root.pem"
    assert config.contract_pool_timeout == POOL_TIMEOUT


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--contract-pool-url", "ftp://ccp.example/x"], "--contract-pool-url"),
        (["--contract-pool-url", "http://ccp.example/x"], "https://"),
        (["--contract-pool-ca", "{ca}"], "need --contract-pool-url"),
        (["--contract-pool-url", "https://ccp.example/", "--contract-pool-ca", "{junk}"], "PEM"),
        (["--contract-pool-url", "https://ccp.example/", "--contract-pool-ca", "{none}"], "ca"),
        (["--contract-pool-url", "https://ccp.example/", "--contract-pool-token", "a b"], "token"),
    ],
)
def test_a_wrong_pool_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    flags: list[str],
    says: str,
) -> None:
    import plugstream.cloud.serve

    CertificateAuthority.create().write_root(tmp_path / "ca.pem")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    paths = {
        "{ca}": str(tmp_path / "ca.pem"),
        "{junk}": str(tmp_path / "junk.pem"),
        "{none}": str(tmp_path / "none.pem"),
    }
    ran: list[CloudConfig] = []
    monkeypatch.setattr(plugstream.cloud.serve, "run", lambda config: ran.append(config) or 0)
    monkeypatch.delenv("PLUGSTREAM_CONTRACT_POOL_TOKEN", raising=False)
    assert main(["cloud", "serve", *(paths.get(f, f) for f in flags)]) == 2
    assert ran == []
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("plugstream: error:")
    assert says.lower() in err.lower()
