"""GET /api/v1/samples/{id}/points.bin: a point-cloud sample as raw little-endian float32 arrays.

Body: n_points * stride float32 values, point-major (x, y, z[, intensity]). Headers: X-Point-Count,
X-Point-Stride and X-Point-Channels ("xyz" or "xyzi"). Members of the sample's project only.
"""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema

from apps.projects.views import ProjectScopedView
from apps.core.errors import ErrorCode, NotApplicable
from apps.samples.points import sample_points
from apps.samples.selectors import sample_get
from ml import modalities


class SamplePoints(ProjectScopedView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(
        description="little-endian float32, point-major; headers X-Point-Count, X-Point-Stride, X-Point-Channels")},
        summary="A point-cloud sample's points as binary float32 arrays (every stored point, file order)")
    def get(self, request, sample_id):
        sample = sample_get(sample_id=sample_id)
        self.check_object_project(request, sample)
        if "points" not in modalities.get(sample.project.modality).views:
            raise NotApplicable("This sample is not a point cloud.", code=ErrorCode.NOT_A_POINT_CLOUD)
        arrays = sample_points(sample=sample)  # ContentUnavailable answers 409 content_unavailable
        response = HttpResponse(arrays.to_bytes(), content_type="application/octet-stream")
        response["X-Point-Count"] = str(arrays.n_points)
        response["X-Point-Stride"] = str(arrays.stride)
        response["X-Point-Channels"] = arrays.channels
        response["Access-Control-Expose-Headers"] = "X-Point-Count, X-Point-Stride, X-Point-Channels"
        response["Cache-Control"] = "private, max-age=3600"
        return response
