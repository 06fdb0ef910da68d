"""``POST projects/{id}/crops/``: send a detection or point-segmentation project's objects, as crops, into a
classification project (:func:`apps.labeling.crops.crops_send`). Leads of both projects."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.labeling.crops import MAX_CROPS, SOURCES, crops_send
from apps.projects.views import ProjectScopedView


class CropsIn(serializers.Serializer):
    target = serializers.IntegerField(help_text="the classification project (same modality) that gets the crops")
    source = serializers.ChoiceField(choices=list(SOURCES), default="labels",
                                     help_text="labels: the labeled shapes; predictions: the deployed model's")
    min_score = serializers.FloatField(default=0.5, help_text="predictions: keep objects scored at least this")
    labels = serializers.ListField(child=serializers.CharField(), required=False,
                                   help_text="only objects of these labels (default: all)")
    padding = serializers.FloatField(default=0.1, help_text="images: grow each box by this share of its size per side")
    limit = serializers.IntegerField(default=1000, help_text=f"at most this many new objects (1-{MAX_CROPS})")
    after = serializers.IntegerField(default=0, min_value=0,
                                     help_text="start after this source sample id (a previous answer's next_after)")


class CropsOut(serializers.Serializer):
    target = serializers.IntegerField()
    parents = serializers.IntegerField(help_text="source samples read")
    objects = serializers.IntegerField(help_text="objects found that were not sent before")
    created = serializers.IntegerField(help_text="new samples in the target project")
    duplicates = serializers.IntegerField(help_text="crops whose content the target project already had")
    skipped = serializers.IntegerField(help_text="unreadable samples and crops under 4 pixels a side")
    samples = serializers.ListField(child=serializers.IntegerField(), help_text="ids of the new samples")
    next_after = serializers.IntegerField(allow_null=True, help_text="more to send: call again with after=next_after; "
                                                                     "null when every source sample was read")


class CropsSend(ProjectScopedView):
    min_role = Role.LEAD

    @extend_schema(request=CropsIn, responses=CropsOut,
                   summary="Send this project's objects as crops into a classification project (derived samples "
                           "linked to their parent, on the parent's split)")
    def post(self, request, project_id):
        project = self.project(request, project_id, Role.LEAD)
        payload = CropsIn(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        target = self.project(request, data.pop("target"), Role.LEAD)
        return Response(CropsOut(crops_send(project=project, target=target, **data)).data)
