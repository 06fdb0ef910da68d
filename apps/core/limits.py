"""This server's caps on decoded content (LOOPLAB_MAX_*), one place for validation at ingest (apps.samples.content),
model input (apps.registry.runtime) and the point-cloud tool's decoding (apps.samples.points).
ml/ is imported lazily so the web process stays light."""
from __future__ import annotations

from django.conf import settings


def content_limits(*, max_duration_s: float):
    """This server's caps (LOOPLAB_MAX_*) as ml.modalities.Limits."""
    from ml.modalities import Limits

    return Limits(max_pixels=settings.LOOPLAB["MAX_IMAGE_PIXELS"], max_duration_s=max_duration_s,
                  max_samples=settings.LOOPLAB["MAX_AUDIO_SAMPLES"], **point_limits())


def point_limits() -> dict:
    """The point-cloud caps of this server, as keyword arguments of ml.modalities.pointcloud's readers."""
    return {"max_points": settings.LOOPLAB["MAX_POINTS"], "max_values": settings.LOOPLAB["MAX_POINT_VALUES"]}
