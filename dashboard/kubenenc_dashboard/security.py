"""Who may change anything: a token, a session cookie derived from it, and a CSRF check.

Without a configured token every state-changing request is refused (the dashboard is
read-only). With one, a request may act when it carries ``Authorization: Bearer <token>``
(a script: browsers never send that header across sites on their own), or when it comes
from a browser session that signed in with the token **and** carries the form's CSRF value,
which only pages served by this dashboard to that session contain. The cookie is HttpOnly
and SameSite=Strict, so another site can neither read it nor make a browser send it along.
Values are HMACs keyed by the token, so a restart with another token ends every session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "kubenenc_session"


class Guard:
    """Checks for one token (None: every action is refused)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    @property
    def enabled(self) -> bool:
        """Whether actions can be enabled at all."""
        return bool(self.token)

    def _mac(self, text: str) -> str:
        assert self.token
        return hmac.new(self.token.encode(), text.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        """Whether ``given`` is the token (compared in constant time)."""
        return bool(self.token and given) and hmac.compare_digest(
            str(given).encode(), str(self.token).encode()
        )

    def new_session(self) -> str:
        """A session cookie value for a browser that just gave the token."""
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._mac('session:' + nonce)}"

    def session_ok(self, cookie: str | None) -> bool:
        """Whether ``cookie`` is a session this token made."""
        if not self.enabled or not cookie or "." not in cookie:
            return False
        nonce, mac = cookie.split(".", 1)
        return hmac.compare_digest(mac, self._mac("session:" + nonce))

    def csrf_for(self, cookie: str | None) -> str:
        """The CSRF value forms of this session carry ("" without a session)."""
        if not self.session_ok(cookie):
            return ""
        assert cookie is not None
        return self._mac("csrf:" + cookie.split(".", 1)[0])

    def may_act(self, cookie: str | None, csrf: str | None, authorization: str | None) -> bool:
        """Whether a state-changing request with these credentials is allowed."""
        if not self.enabled:
            return False
        if authorization and authorization.startswith("Bearer "):
            return self.token_ok(authorization.removeprefix("Bearer ").strip())
        expected = self.csrf_for(cookie)
        return bool(expected and csrf) and hmac.compare_digest(expected, str(csrf))
