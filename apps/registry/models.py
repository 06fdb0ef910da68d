"""Model versions and deployments: what was trained, and which version of a project serves.

The tables keep the names they had in the training and serving apps (migration 0001 moved the models here
in Django's state only; no data moved)."""
from django.conf import settings
from django.db import models

from apps.projects.models import Project


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    # The training run that made this version. A string reference, not an import: training is above the registry
    # in the layer order, and import-linter does not see this edge. It keeps the column, its constraint and
    # the cascade as they were; nothing in the registry reads the run except through this relation.
    training_run = models.OneToOneField("training.TrainingRun", on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    modality = models.CharField(max_length=16)
    task_type = models.CharField(max_length=24, default="classification")
    # The learner (ml.learners registry name) that made this version; "" for the built-in classification pipeline
    # (ml.training's networks, with int8 export and MC dropout). A learner version's checkpoint is the learner's own
    # blob (Learner.to_bytes) and its ONNX file runs through ml.learners.runners with ``manifest``.
    learner = models.CharField(max_length=64, blank=True, default="")
    manifest = models.JSONField(null=True, blank=True, help_text="what the ONNX runner needs besides the graph")
    labels = models.JSONField()
    checkpoint = models.FileField(max_length=300, blank=True, default="")
    onnx = models.FileField(max_length=300, blank=True, default="")
    confusion_png = models.FileField(max_length=300, blank=True, default="")
    history = models.JSONField(default=list, blank=True)
    eval_report = models.JSONField(null=True, blank=True)
    baseline_model = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    baseline_report = models.JSONField(null=True, blank=True, help_text="the deployed model on the same test set")
    comparison = models.JSONField(null=True, blank=True)
    parity = models.JSONField(null=True, blank=True)
    onnx_int8 = models.FileField(max_length=300, blank=True, default="")
    runtime = models.CharField(max_length=8, default="fp32", help_text="what serving runs: fp32 or int8 (onnx_int8)")
    runtime_report = models.JSONField(null=True, blank=True, help_text="fp32 vs int8: latency, accuracy, decision")
    curve = models.JSONField(null=True, blank=True,
                             help_text="learning curve: this and earlier versions scored on this version's test split")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "training_modelversion"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="model_unique_version")]


class Deployment(models.Model):
    """The latest deployment of a project is the one serving."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=16, default="manual")  # manual | gate
    label_to_serving_s = models.FloatField(null=True, blank=True,
                                           help_text="seconds from the newest label in the model's dataset to serving")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "serving_deployment"
        ordering = ["id"]
