from django.conf import settings
from django.db import models

from apps.core.models import JobFields
from apps.projects.models import Project


class ExportFormat(models.TextChoices):
    CLASSIFICATION_CSV = "csv"
    CLASSIFICATION_JSON = "json"
    COCO = "coco"
    YOLO = "yolo"
    VOC = "voc"
    REGIONS_CSV = "regions_csv"
    REGIONS_JSON = "regions_json"
    KITTI = "kitti"
    CUBOIDS_JSON = "cuboids_json"
    NPY = "npy"
    PLY = "ply"


class Export(JobFields):
    """A file of a project's labels in one format, written by a Celery job (looplab.exports.run).

    It names the data it came from: for classification the frozen DatasetVersion; for other task
    types the annotation ids it exported and a sha256 digest of their (final) results.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    options = models.JSONField(default=dict, blank=True)
    dataset_version = models.ForeignKey("training.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="exports")
    annotation_ids = models.JSONField(default=list, blank=True)
    digest = models.CharField(max_length=64, blank=True, default="")
    file = models.FileField(max_length=300, blank=True, default="")
    filename = models.CharField(max_length=200, blank=True, default="")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["id"]
