"""``Authorization: Token <key>`` against hashed, expiring API tokens (apps.accounts.models.ApiToken)."""
from __future__ import annotations

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from apps.accounts.models import ApiToken
from apps.accounts.services import token_hash, token_mark_used
from apps.accounts.throttles import TokenFailureThrottle
from apps.core.errors import ErrorCode


class ApiTokenAuthentication(BaseAuthentication):
    """The API's token scheme (the header is the public contract: ``Authorization: Token <key>``).

    A wrong or expired token is a 401 (``authentication_failed`` / ``token_expired``) and counts against
    the client address; once the address has used up the ``token_failure`` rate, its wrong tokens are a
    429 until the window passes. A right token still works from there: many clients can share one
    address (a NAT, a proxy the settings do not know about), and someone spraying wrong tokens must not
    lock them all out; guessing stays hopeless either way (160 random bits, 20 tries a minute).
    """

    keyword = "Token"

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != self.keyword.lower().encode():
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: use 'Authorization: Token <key>'.")
        try:
            key = auth[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the key has non-ASCII characters.")

        now = timezone.now()
        token = ApiToken.objects.select_related("user").filter(key_hash=token_hash(key)).first()
        if token is None or not token.user.is_active:
            self._failed(request)
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.is_expired(now):
            self._failed(request)
            raise exceptions.AuthenticationFailed(
                f"This API token ({token.prefix}…) expired at {token.expires_at.isoformat()}; "
                "ask for a new one (manage.py create_api_token).",
                code=ErrorCode.TOKEN_EXPIRED,
            )
        token_mark_used(token=token, now=now)
        return token.user, token

    @staticmethod
    def _failed(request) -> None:
        """Count a wrong token; past the rate, answer 429 instead of 401."""
        throttle = TokenFailureThrottle()
        wait = throttle.blocked_for(request)
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="Too many wrong API tokens from this address.")
        throttle.record_failure(request)

    def authenticate_header(self, request):
        return self.keyword
