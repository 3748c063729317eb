"""The board is safe by default: credentials, loopback binding, no secrets in pages or errors."""

from __future__ import annotations

import base64

import pytest
from web.conftest import BoardClient, client_of

from trioqueue._cli import main
from trioqueue.web import Credentials
from trioqueue.web._security import check_binding, csrf_ok, is_loopback, parse_form


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_every_request_needs_the_credentials_when_set(board: BoardClient) -> None:
    async with client_of(board.backend, auth="admin:s3cret:pw") as http:
        for path in ("/", "/tasks", "/static/board.css"):
            r = await http.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), path
        assert (await http.get("/", headers=basic("admin", "s3cret"))).status_code == 401
        assert (await http.get("/", headers=basic("Admin", "s3cret:pw"))).status_code == 401
        assert (await http.get("/", headers={"Authorization": "Basic !!!"})).status_code == 401
        r = await http.get("/", headers=basic("admin", "s3cret:pw"))
        assert r.status_code == 200 and "s3cret" not in r.text
        r = await http.post("/task/retry", data={"id": "x"})
        assert r.status_code == 401


def test_credentials_parse_and_never_show_the_password() -> None:
    c = Credentials.parse("ops:pa:ss")
    assert (c.user, c.password) == ("ops", "pa:ss")
    assert "pa:ss" not in repr(c)
    for bad in ("", "ops", "ops:", ":secret-pw"):
        with pytest.raises(ValueError, match="user:password") as info:
            Credentials.parse(bad)
        assert "secret-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
     ("board.example", False)],
)  # fmt: skip
def test_only_loopback_binds_without_credentials(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    if loopback:
        check_binding(host, None)
    else:
        with pytest.raises(ValueError, match="without credentials"):
            check_binding(host, None)
    check_binding(host, Credentials("u", "p"))


def test_web_command_refuses_a_public_address_without_credentials(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TRIOQUEUE_WEB_AUTH", raising=False)
    url = f"sqlite:///{tmp_path}/t.db"
    assert main(["web", "--backend", url, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve the board on '0.0.0.0' without credentials" in err
    assert main(["web", "--backend", url, "--host", "0.0.0.0", "--auth", "nocolon-secret"]) == 2
    err = capsys.readouterr().err
    assert "user:password" in err and "nocolon-secret" not in err
    assert not (tmp_path / "t.db").exists()  # refused before anything was opened


def test_csrf_check_and_form_parsing() -> None:
    assert csrf_ok("a" * 43, {"csrf": "a" * 43})
    assert not csrf_ok("a" * 43, {"csrf": "b" * 43})
    assert not csrf_ok(None, {"csrf": "x"}) and not csrf_ok("", {"csrf": ""})
    assert parse_form(b"id=%3Cx%3E&csrf=t&id=y") == {"id": "y", "csrf": "t"}
    with pytest.raises(ValueError, match="too large"):
        parse_form(b"x" * 20_000)
    with pytest.raises(ValueError, match="UTF-8"):
        parse_form(b"id=\xff")
    with pytest.raises(ValueError):
        parse_form(b"&".join(b"a=1" for _ in range(100)))
