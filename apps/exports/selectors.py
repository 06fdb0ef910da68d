from __future__ import annotations

from apps.core.errors import NotFound
from apps.core.ids import is_id
from apps.exports.models import Export


def export_get(*, export_id) -> Export:
    export = (Export.objects.select_related("project", "dataset_version").filter(pk=export_id).first()
              if is_id(export_id) else None)
    if export is None:
        raise NotFound("Export not found.")
    return export


def exports_for_project(*, project):
    return Export.objects.filter(project=project).select_related("dataset_version").order_by("-id")
