"""Redis URLs: a password added to a redis:// or rediss:// URL that carries none (the pool's settings and the
backend's client both use it; it imports nothing beyond the standard library)."""

from __future__ import annotations

from urllib.parse import quote


def with_password(url: str, password: str | None) -> str:
    """Insert a password (URL-quoted) into a redis:// or rediss:// URL that carries none."""
    if not password or "@" in url.split("//", 1)[-1]:
        return url
    scheme, rest = url.split("//", 1)
    return f"{scheme}//:{quote(password, safe='')}@{rest}"
