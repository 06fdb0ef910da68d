"""API throttles. Rates are read from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` on every request.

(DRF's own classes copy the rates once at import, so a changed setting would not reach them.)
Counters live in Django's cache: Redis in production (shared by every web process), memory otherwise.
"""
from __future__ import annotations

from rest_framework import throttling
from rest_framework.settings import api_settings


class _RatesFromSettings:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonRateThrottle(_RatesFromSettings, throttling.AnonRateThrottle):
    """Requests without credentials, per client address (scope ``anon``)."""


class UserRateThrottle(_RatesFromSettings, throttling.UserRateThrottle):
    """Authenticated requests, per user (scope ``user``)."""


class TokenFailureThrottle(_RatesFromSettings, throttling.SimpleRateThrottle):
    """Wrong API tokens, per client address (scope ``token_failure``).

    A wrong token is refused during authentication, before DRF's throttles run, so the authentication
    class counts failures here itself: ``blocked_for()`` says how long a client that has used up its failures
    must wait (None: go ahead), ``record_failure()`` counts one more.
    """

    scope = "token_failure"

    def get_cache_key(self, request, view=None):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _load(self, request) -> bool:
        if self.rate is None:
            return False
        self.key = self.get_cache_key(request)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        return True

    def blocked_for(self, request) -> float | None:
        if not self._load(request) or len(self.history) < self.num_requests:
            return None
        return self.wait()

    def record_failure(self, request) -> None:
        if self._load(request):
            self.history.insert(0, self.now)
            self.cache.set(self.key, self.history, self.duration)
