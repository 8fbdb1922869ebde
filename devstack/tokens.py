"""Dev access tokens: JWTs shaped like Entra ID app-only tokens, signed HS256 with a shared dev secret.

The identity endpoint mints them; the MDE simulator verifies them. Claims follow a v1 app-only
token: ``aud``, ``iss`` (``https://sts.windows.net/{tid}/``), ``tid``, ``appid``, ``azp``, ``oid``,
``roles``, ``iat``, ``nbf``, ``exp``. The secret should be at least 32 bytes (pyjwt warns otherwise).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import jwt

ALGORITHM = "HS256"
TokenErrorReason = Literal["expired", "bad_signature", "wrong_audience", "malformed"]


class TokenError(Exception):
    """A token the caller must refuse; ``reason`` says why (never the token itself)."""

    def __init__(self, reason: TokenErrorReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: TokenErrorReason = reason
        self.message = message


def object_id_for(client_id: str) -> str:
    """A stable service-principal object id for a client id (dev only: derived, not looked up)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"devstack:sp:{client_id}"))


def mint_token(
    *,
    audience: str,
    roles: list[str],
    client_id: str,
    tenant_id: str,
    lifetime_s: int,
    secret: str,
    now: float | None = None,
) -> tuple[str, int]:
    """A signed app-only token and its ``exp`` (epoch seconds)."""
    issued = int(time.time() if now is None else now)
    expires_on = issued + lifetime_s
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "tid": tenant_id,
        "appid": client_id,
        "azp": client_id,
        "oid": object_id_for(client_id),
        "sub": object_id_for(client_id),
        "idtyp": "app",
        "ver": "1.0",
        "roles": list(roles),
        "iat": issued,
        "nbf": issued,
        "exp": expires_on,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires_on


def _normalise(audience: str) -> str:
    return audience.rstrip("/").lower()


def verify_token(token: str, *, secret: str, audiences: set[str]) -> dict[str, Any]:
    """The claims of a valid token, or ``TokenError``. Audiences compare case-insensitively and
    ignore a trailing slash (``https://api.securitycenter.microsoft.com/`` is the same audience)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"verify_aud": False, "require": ["exp", "iat", "aud"]},
        )
    except jwt.ExpiredSignatureError as e:
        raise TokenError("expired", "the token has expired") from e
    except jwt.InvalidSignatureError as e:
        raise TokenError("bad_signature", "the token signature is invalid") from e
    except jwt.InvalidTokenError as e:
        raise TokenError("malformed", f"the token is not valid ({type(e).__name__})") from e
    aud = claims.get("aud")
    if not isinstance(aud, str) or _normalise(aud) not in {_normalise(a) for a in audiences}:
        raise TokenError("wrong_audience", f"the token audience {aud!r} is not accepted")
    return claims
