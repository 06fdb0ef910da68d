from django.conf import settings
from django.db import models

from apps.accounts.models import Role


class Modality(models.TextChoices):
    IMAGE = "image"
    AUDIO = "audio"
    POINTCLOUD = "pointcloud"


class TaskType(models.TextChoices):
    CLASSIFICATION = "classification"  # any modality: {"label"}
    DETECTION = "detection"  # image: {"boxes": [...], "polygons": [...]}
    AUDIO_REGIONS = "audio_regions"  # audio: {"regions": [{"label", "start", "end", "text"?}]}
    POINT_SEGMENTATION = "point_segmentation"  # point cloud: {"point_labels": [...]}
    CUBOIDS = "cuboids"  # point cloud: {"cuboids": [{"label", "center", "size", "yaw"}]}


# Which task types each modality supports.
TASK_TYPES_BY_MODALITY = {
    "image": ("classification", "detection"),
    "audio": ("classification", "audio_regions"),
    "pointcloud": ("classification", "point_segmentation", "cuboids"),
}


def default_split_ratios() -> dict:
    return {"train": 0.7, "val": 0.15, "test": 0.15}


class Project(models.Model):
    name = models.CharField(max_length=200)
    modality = models.CharField(max_length=16, choices=Modality.choices)
    task_type = models.CharField(max_length=32, choices=TaskType.choices, default=TaskType.CLASSIFICATION)
    labels = models.JSONField()
    split_ratios = models.JSONField(default=default_split_ratios)
    label_budget = models.PositiveIntegerField(default=1000, help_text="labels this project may buy in total")
    confidence_threshold = models.FloatField(default=0.6, help_text="predictions below this go back to labeling")
    auto_deploy = models.BooleanField(default=False, help_text="deploy a new model when it does not regress")
    annotations_per_task = models.PositiveSmallIntegerField(default=1, help_text="independent annotations each task needs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.modality})"

    @property
    def label_index(self) -> dict[str, int]:
        """Each label's class index (its position in ``labels``): the one label -> index map the apps use."""
        return {label: i for i, label in enumerate(self.labels)}


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]
