from django.conf import settings
from django.db import models

from apps.core.models import JobFields
from apps.projects.models import Project
from apps.samples.models import Sample


class Round(JobFields):
    """A selection round: picks up to ``budget`` samples to label with a strategy; runs as a Celery job."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    strategy = models.CharField(max_length=40)
    strategy_used = models.CharField(max_length=80, blank=True, default="")
    budget = models.PositiveIntegerField()
    selected = models.PositiveIntegerField(default=0)
    model_version = models.ForeignKey("registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    details = models.JSONField(default=dict, blank=True)
    # batch constraints on the train split (slice and class quotas/caps, cost, near-duplicate exclusion), as
    # round_create cleaned them; what they did is in details["constraints"]
    constraints = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="round_unique_number")]


class TaskState(models.TextChoices):
    PENDING = "pending"  # open, or leased (see leased_by / lease_expires_at)
    DONE = "done"


class Task(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    sample = models.OneToOneField(Sample, on_delete=models.CASCADE, related_name="task")
    round = models.ForeignKey(Round, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    rank = models.PositiveIntegerField(default=0)
    score = models.FloatField(default=0.0)
    priority = models.FloatField(default=0.0)
    state = models.CharField(max_length=8, choices=TaskState.choices, default=TaskState.PENDING)
    # A task can be claimed when available_at <= now: at creation, on release, or when its lease ends.
    available_at = models.DateTimeField()
    leased_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    leased_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    prediction = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "state", "-priority", "id"], name="task_queue_order"),
            # "Which task do I hold?": every tasks/next call asks it first.
            models.Index(fields=["leased_by", "project", "state"], name="task_lease_holder"),
        ]


class TaskSkip(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "user"], name="skip_unique")]


class ReviewStatus(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CORRECTED = "corrected"


class Annotation(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="annotations")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="annotations")
    result = models.JSONField()
    lease_to_submit_s = models.FloatField(null=True, blank=True)
    active_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Review by a lead (apps.labeling.review). A rejected annotation no longer counts toward the task's
    # annotations_per_task; a correction keeps the annotator's ``result`` and stores the lead's version.
    review_status = models.CharField(max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.PENDING)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    review_comment = models.TextField(blank=True, default="")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    corrected_result = models.JSONField(null=True, blank=True)
    # For a task that opened with the model's prediction: how much of it the annotator kept, as
    # ml.preannotation.compare_preannotation counts it ({"model", "kind", "n_predicted", "kept", "edited",
    # "deleted", "added"}); null when the task had no prediction.
    preannotation = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "review_status"], name="annotation_review")]

    @property
    def final_result(self) -> dict:
        """What the annotation stands for after review: the lead's correction, else the annotator's result."""
        return self.corrected_result if self.corrected_result is not None else self.result


class LabelCheck(JobFields):
    """A label-quality check of a project's labeled samples, run as a Celery job (looplab.samples.label_check,
    the task name from before it moved here from samples; so is its table).

    ``findings`` holds the ranked list (label issues, outliers, near-duplicates) as the API returns it;
    ``n_checked`` is how many labeled samples it looked at and ``space`` the embedding space it used.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_checks")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    limit = models.PositiveIntegerField(default=200)
    space = models.CharField(max_length=40, blank=True, default="")
    n_checked = models.PositiveIntegerField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    findings = models.JSONField(default=list, blank=True)

    class Meta:
        db_table = "samples_labelcheck"
        ordering = ["id"]
