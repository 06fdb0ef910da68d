"""Files a job writes under a name of its own (models/<project>/run<id>/model.onnx, exports/<project>/<id>/...).

A job that is run again after its worker was killed writes the same names again: :func:`file_put` replaces
what an earlier attempt left there instead of letting the storage pick a new name beside it, so a rerun never
leaves a second copy behind.
"""
from __future__ import annotations

from django.core.files.storage import default_storage


def file_put(*, name: str, content) -> str:
    """Store ``content`` (a Django File) at exactly ``name``, replacing a file an earlier attempt left."""
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, content)
