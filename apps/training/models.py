from django.conf import settings
from django.db import models

from apps.core.models import JobFields
from apps.projects.models import Project


class DatasetVersion(models.Model):
    """A frozen dataset: the exact sample ids and labels a model was trained and evaluated on."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dataset_versions")
    number = models.PositiveIntegerField()
    labels = models.JSONField(help_text="the project's label list at freeze time")
    items = models.JSONField(help_text="[[sample_id, label_index, split], ...] sorted by sample id")
    digest = models.CharField(max_length=64, help_text="sha256 of items: equal digests, equal data")
    counts = models.JSONField(default=dict)
    last_label_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="dataset_unique_number")]

    @property
    def n_labeled(self) -> int:
        """Labeled samples in this version (all splits)."""
        return sum(int(v) for v in (self.counts or {}).values() if isinstance(v, (int, float)))


class TrainingRun(JobFields):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    number = models.PositiveIntegerField()
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="training_runs")
    model = models.OneToOneField("registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    config = models.JSONField(default=dict)
    stage = models.CharField(max_length=16, default="queued")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="run_unique_number")]


class StepKind(models.TextChoices):
    TRAIN = "train"
    EVALUATE = "evaluate"
    EXPORT = "export"
    DEPLOY = "deploy"


class PipelineStep(JobFields):
    """One Celery task of a training run's pipeline (train → evaluate → export → gate/deploy)."""

    training_run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="steps")
    kind = models.CharField(max_length=16, choices=StepKind.choices)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["training_run", "kind"], name="step_unique_kind")]
