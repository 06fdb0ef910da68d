"""Exports API (leads): start an export job, follow it, download its file."""
from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers

from apps.accounts.models import Role
from apps.core.api import JobOut
from apps.projects.views import JobCancelView, JobDetailView, JobListCreateView, ProjectScopedView
from apps.core.errors import Conflict, ErrorCode
from apps.exports.selectors import export_get, exports_for_project
from apps.exports.services import export_create
from apps.exports.writers import FORMATS_BY_TASK_TYPE


class ExportIn(serializers.Serializer):
    format = serializers.CharField(max_length=16)
    reviewed_only = serializers.BooleanField(default=False)


class ExportOut(JobOut):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    format = serializers.CharField()
    options = serializers.DictField()
    dataset_version = serializers.SerializerMethodField()
    annotations = serializers.SerializerMethodField()
    digest = serializers.CharField()
    counts = serializers.DictField()
    filename = serializers.CharField()
    size_bytes = serializers.IntegerField(allow_null=True)
    download_url = serializers.SerializerMethodField()

    def get_dataset_version(self, obj) -> dict | None:
        v = obj.dataset_version
        return {"id": v.pk, "number": v.number, "digest": v.digest} if v else None

    def get_annotations(self, obj) -> int:
        return len(obj.annotation_ids or [])

    def get_download_url(self, obj) -> str | None:
        return f"/api/v1/exports/{obj.pk}/download" if obj.status == "succeeded" and obj.file else None


class ExportListCreate(JobListCreateView):
    min_role = Role.LEAD

    out, payload, scope = ExportOut, ExportIn, "exports"
    list_summary = "A project's exports, newest first (leads)"
    create_summary = "Export the project's labels in a format (a job; names its dataset version or annotations)"

    def jobs(self, project):
        return exports_for_project(project=project)[:50]

    def list_headers(self, project) -> dict:
        return {"X-Export-Formats": ",".join(FORMATS_BY_TASK_TYPE.get(project.task_type, ()))}

    def create(self, *, project, user, payload):
        return export_create(project=project, user=user, **payload.validated_data)


class ExportDetail(JobDetailView):
    min_role = Role.LEAD
    out = ExportOut
    summary = "An export: status, progress, dataset version, download URL"

    def load(self, pk):
        return export_get(export_id=pk)


class ExportCancel(JobCancelView):
    out = ExportOut
    load = ExportDetail.load
    summary = "Cancel an export (leads): queued ends now, running stops at its next progress point"


class ExportDownload(ProjectScopedView):
    min_role = Role.LEAD

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="the export file")},
                   summary="Download an export's file")
    def get(self, request, export_id):
        export = export_get(export_id=export_id)
        self.check_object_project(request, export)
        if export.status != "succeeded" or not export.file:
            raise Conflict(f"The export is {export.status}; nothing to download yet.", code=ErrorCode.EXPORT_NOT_READY,
                           details={"status": export.status})
        content_type = {"json": "application/json", "csv": "text/csv", "zip": "application/zip"}.get(
            export.filename.rsplit(".", 1)[-1], "application/octet-stream")
        return FileResponse(default_storage.open(export.file.name, "rb"), as_attachment=True,
                            filename=export.filename, content_type=content_type)
