from django.db import models

from apps.core.models import JobFields
from apps.projects.models import Project


class Split(models.TextChoices):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class Sample(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="samples")
    external_id = models.CharField(max_length=255, blank=True, default="")
    content_hash = models.CharField(max_length=64, help_text="sha256 of the content, or of 'uri:' + uri")
    file = models.FileField(max_length=300, blank=True, default="")
    uri = models.TextField(blank=True, default="")
    content_format = models.CharField(max_length=16, blank=True, default="")
    content_info = models.JSONField(default=dict, blank=True,
                                    help_text="width/height (image), duration_s (audio), n_points (point cloud)")
    metadata = models.JSONField(default=dict, blank=True)
    split = models.CharField(max_length=5, choices=Split.choices)
    # Ground truth for classification, copied from the latest accepted annotation.
    label = models.CharField(max_length=100, null=True, blank=True)
    labeled_at = models.DateTimeField(null=True, blank=True)
    # What the deployed model said when the sample was pushed with "predict": true.
    predicted_label = models.CharField(max_length=100, null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    low_confidence = models.BooleanField(default=False)
    # Sent back to labeling by a lead from a drift check: rounds take these first, like low-confidence ones.
    drift_flagged = models.BooleanField(default=False)
    # Cached embedding (float32 bytes) and the space it lives in: "label_free:v<N>" (see
    # samples.selectors.label_free_space) or "model:<id>".
    embedding = models.BinaryField(null=True, blank=True)
    embedding_space = models.CharField(max_length=40, blank=True, default="")
    embed_error = models.CharField(max_length=300, blank=True, default="")
    # A derived sample (an object cropped from a sample of another project, apps.labeling.crops): the sample it was
    # cut from and the shape it shows ({"project", "source", "label", "score", "box"/"points"}).
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived")
    parent_shape = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "content_hash"], name="sample_unique_content")]
        indexes = [
            models.Index(fields=["project", "split"]),
            models.Index(fields=["project", "label"]),
            models.Index(fields=["project", "external_id"]),
            models.Index(fields=["project", "embedding_space", "id"], name="sample_space"),
        ]

    @property
    def is_labeled(self) -> bool:
        return self.label is not None


class EmbeddingJob(JobFields):
    """A batch of freshly pushed samples to embed (looplab.samples.embed_job), run through the job runner so a
    killed worker's batch is taken over instead of lost. ``embedded`` counts the samples it embedded."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="embedding_jobs")
    sample_ids = models.JSONField(default=list)
    embedded = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
