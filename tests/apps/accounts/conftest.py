import pytest


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counters live in the (per-process) cache: start and leave each test with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
