from __future__ import annotations

from apps.core.ids import get_by_id
from apps.exports.models import Export


def export_get(*, export_id) -> Export:
    return get_by_id(Export.objects.select_related("project", "dataset_version"), export_id, "Export")


def exports_for_project(*, project):
    return Export.objects.filter(project=project).select_related("dataset_version").order_by("-id")
