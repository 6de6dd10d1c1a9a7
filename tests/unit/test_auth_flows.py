"""Pieces of the login flows: PKCE (RFC 7636's own example), the authorize URL, pasted redirects,
parameter overrides, and token-endpoint answers sorted into rejected / transient."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from crossroute.auth.flows import LoginDenied, LoginError
from crossroute.auth.flows.loopback import parse_redirect
from crossroute.auth.flows.pkce import authorize_url, challenge_of, new_pkce, new_state
from crossroute.auth.grants import GrantError, InvalidGrant, _check, jwt_claims
from crossroute.auth.oauth_params import PARAMS, params_for


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    assert challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    p = new_pkce()
    assert 43 <= len(p.verifier) <= 128 and p.challenge == challenge_of(p.verifier) and p.method == "S256"
    assert new_state() != new_state()


def test_authorize_urls_carry_what_each_provider_needs() -> None:
    p = new_pkce()
    for name in ("claude", "codex", "antigravity"):
        params = PARAMS[name]
        url = authorize_url(params, p, "st", params.redirect_uri)
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert url.startswith(params.authorize_url + "?")
        assert q["client_id"] == params.client_id and q["response_type"] == "code"
        assert q["code_challenge"] == p.challenge and q["code_challenge_method"] == "S256" and q["state"] == "st"
        assert q["redirect_uri"] == params.redirect_uri
    assert PARAMS["claude"].redirect_uri == "http://localhost:54545/callback"
    assert PARAMS["codex"].redirect_uri == "http://localhost:1455/auth/callback"
    assert PARAMS["antigravity"].callback_port == 51121
    codex = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url(PARAMS["codex"], p, "s", "r")).query).items()}
    assert codex["codex_cli_simplified_flow"] == "true" and codex["id_token_add_organizations"] == "true"
    assert codex["scope"] == "openid email profile offline_access"
    assert authorize_url(PARAMS["claude"], p, "s", "r").split("?", 1)[1].startswith("code=true&")


def test_every_endpoint_is_overridable() -> None:
    env = {"CROSSROUTE_CLAUDE_TOKEN_URL": "http://127.0.0.1:1/t", "CROSSROUTE_CLAUDE_CALLBACK_PORT": "4000",
           "CROSSROUTE_KIMI_DEVICE_URL": "http://127.0.0.1:1/d", "CROSSROUTE_CODEX_REFRESH_LEAD": "60"}
    assert params_for("claude", env).token_url == "http://127.0.0.1:1/t"
    assert params_for("claude", env).redirect_uri == "http://localhost:4000/callback"
    assert params_for("kimi", env).device_url == "http://127.0.0.1:1/d"
    assert params_for("codex", env).refresh_lead == 60.0
    assert params_for("claude", {}) is PARAMS["claude"]


@pytest.mark.parametrize(("text", "code"), [
    ("http://localhost:54545/callback?code=abc&state=S1", "abc"),
    ("localhost:54545/callback?code=abc&state=S1".join(["http://", ""]), "abc"),
    ("abc#S1", "abc"),  # what Claude's page shows for copying
    ("code=abc&state=S1", "abc"),
    ("  http://localhost:1455/auth/callback?state=S1&code=abc  ", "abc"),
])
def test_pasted_redirects(text: str, code: str) -> None:
    assert parse_redirect(text, "S1").code == code


def test_pasted_redirect_problems() -> None:
    with pytest.raises(LoginError, match="state does not match"):
        parse_redirect("http://localhost/callback?code=abc&state=OTHER", "S1")
    with pytest.raises(LoginError, match="state does not match"):
        parse_redirect("abc#OTHER", "S1")
    with pytest.raises(LoginDenied, match="denied"):
        parse_redirect("http://localhost/callback?error=access_denied&state=S1", "S1")
    with pytest.raises(LoginError, match="no authorization code"):
        parse_redirect("http://localhost/callback?state=S1", "S1")
    with pytest.raises(LoginError, match="nothing was pasted"):
        parse_redirect("   ", "S1")


@pytest.mark.parametrize(("status", "body", "kind"), [
    (400, {"error": "invalid_grant", "error_description": "Refresh token revoked"}, InvalidGrant),
    (400, {"error": "unauthorized_client"}, InvalidGrant),
    (401, {"error": {"type": "invalid_token", "message": "expired"}}, InvalidGrant),
    (401, {}, GrantError),
    (429, {"error": "rate_limited"}, GrantError),
    (500, {"error": "server_error"}, GrantError),
    (200, {"error": "slow_down"}, GrantError),
])
def test_token_answers_sorted(status: int, body: dict, kind: type[Exception]) -> None:
    with pytest.raises(kind) as err:
        _check(status, body, {}, "refresh of x")
    assert type(err.value) is kind
    assert "refresh of x" in str(err.value)


def test_kimi_refresh_401_is_a_rejection() -> None:
    with pytest.raises(InvalidGrant):
        _check(401, {}, {}, "refresh of kimi", rejected_statuses=(401, 403))


def test_jwt_claims_unverified() -> None:
    assert jwt_claims("a.eyJlbWFpbCI6ImdAeC5jb20ifQ.s") == {"email": "g@x.com"}
    assert jwt_claims("not-a-jwt") == {} and jwt_claims(None) == {} and jwt_claims("a.!!!.b") == {}
