"""Finding a backend class by URL scheme through entry points (name -> class).

Entry points, not subclass walking or a global dict: a plugin installed with pip is found,
and nothing needs to be reset between tests.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from urllib.parse import urlsplit

from kubenenc.backends.contract import Backend
from kubenenc.errors import ConfigurationError

GROUP = "kubenenc.backends"

_EXTRAS = {"redis": "redis", "rediss": "redis", "mongodb": "mongodb", "mongodb+srv": "mongodb"}
_ALIASES = {"rediss": "redis", "mongodb+srv": "mongodb"}


def available_backends() -> list[str]:
    """Names of every installed backend."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def backend_class(scheme: str) -> type[Backend]:
    """The class registered for ``scheme``; ConfigurationError saying what to install."""
    name = _ALIASES.get(scheme, scheme)
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        hint = (
            f'; install it with: pip install "kubenenc[{_EXTRAS[scheme]}]"'
            if scheme in _EXTRAS
            else f"; installed backends: {', '.join(available_backends()) or 'none'}"
        )
        raise ConfigurationError(f"no backend for URL scheme {scheme!r}{hint}")
    try:
        cls = found[0].load()
    except ImportError as exc:
        extra = _EXTRAS.get(scheme)
        hint = f'; install it with: pip install "kubenenc[{extra}]"' if extra else ""
        raise ConfigurationError(f"backend {name!r} cannot be loaded: {exc}{hint}") from exc
    return cls  # type: ignore[no-any-return]


def open_backend(url: str) -> Backend:
    """Open the backend named by ``url`` (``sqlite:///path.db``, ``memory://``, ...)."""
    scheme = urlsplit(url).scheme
    if not scheme:
        raise ConfigurationError(
            f"backend URL {url!r} has no scheme; use e.g. sqlite:///kubenenc.db or memory://"
        )
    return backend_class(scheme).from_url(url)


_SECRET_WORDS = ("pass", "secret", "token", "credential", "apikey", "api_key")


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith("file")


def redact_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``, safe to log or print.

    Hides the password of the user info (also of multi-host URLs such as
    ``mongodb://u:p@h1,h2/db``, which :func:`urllib.parse.urlsplit` cannot parse, and of
    passwords holding an unescaped ``@``) and the value of every query parameter whose name
    says it is a secret (``password``, ``tlsCertificateKeyFilePassword``, ``token``, ...);
    everything else is kept as written.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop, rest.rfind("@") + 1)
        if found >= 0:
            end = min(end, found)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        params = []
        for param in query.split("&"):
            name, eq, _ = param.partition("=")
            params.append(f"{name}=***" if eq and _secret_param(name) else param)
        tail = f"{path}?{'&'.join(params)}{hash_}{fragment}"
    return f"{scheme}://{netloc}{tail}"
