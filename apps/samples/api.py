from __future__ import annotations

import base64
import hashlib
import binascii
import json
import re

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.core.api import query_bool
from apps.core.errors import Conflict, ErrorCode, ValidationFailed
from apps.core.pagination import Pagination
from apps.core.services import idempotent_call, request_fingerprint
from apps.projects.views import ProjectScopedView
from apps.samples import content as content_io
from apps.samples.selectors import MAX_METADATA_FILTERS, METADATA_OPERATORS, sample_get, samples_filter
from apps.samples.services import IngestItem, samples_ingest
from apps.samples.similar import samples_similar

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp", "WAV": "audio/wav",
         "FLAC": "audio/flac", "OGG": "audio/ogg"}


class PushItemIn(serializers.Serializer):
    external_id = serializers.CharField(max_length=255, required=False)
    content = serializers.CharField(required=False, help_text="base64 of the file")
    uri = serializers.CharField(required=False, max_length=2000)
    metadata = serializers.DictField(required=False)


class PushIn(serializers.Serializer):
    samples = PushItemIn(many=True)
    predict = serializers.BooleanField(default=False, help_text="answer with the deployed model's prediction")


class PushResultOut(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["created", "duplicate"])
    split = serializers.CharField()
    prediction = serializers.DictField(required=False, allow_null=True)


class PushOut(serializers.Serializer):
    samples = PushResultOut(many=True)


class SampleOut(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    external_id = serializers.CharField()
    split = serializers.CharField()
    label = serializers.CharField(allow_null=True)
    labeled = serializers.BooleanField(source="is_labeled")
    metadata = serializers.DictField()
    content_format = serializers.CharField()
    content_info = serializers.DictField()
    uri = serializers.CharField()
    predicted_label = serializers.CharField(allow_null=True)
    confidence = serializers.FloatField(allow_null=True)
    low_confidence = serializers.BooleanField()
    has_embedding = serializers.SerializerMethodField()
    content_url = serializers.SerializerMethodField()
    parent = serializers.IntegerField(source="parent_id", allow_null=True,
                                      help_text="a crop: the sample (of another project) it was cut from")
    parent_shape = serializers.JSONField(allow_null=True, help_text="a crop: the shape it shows in its parent")
    created_at = serializers.DateTimeField()

    def get_has_embedding(self, obj) -> bool:
        return bool(obj.embedding_space)

    def get_content_url(self, obj) -> str:
        return content_url(obj)


def content_url(sample) -> str:
    return f"/api/v1/samples/{sample.pk}/content/"


def _parse_json_batch(data) -> tuple[list[IngestItem], bool]:
    """Hand-rolled on purpose: this is the ingest hot path (1,000 items a request), where DRF's
    per-field serializers cost more than the database insert. Same rules as PushIn. Text the database
    cannot store (NUL, unpaired surrogates) is refused by samples_ingest, with its field path, as for a
    multipart push."""
    if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
        raise ValidationFailed('Expected {"samples": [...], "predict": false}.', code=ErrorCode.INVALID_BODY)
    predict = data.get("predict", False)
    if not isinstance(predict, bool):
        raise ValidationFailed("predict must be true or false.", code=ErrorCode.INVALID_BODY)
    items, errors = [], []
    for index, raw in enumerate(data["samples"]):
        if not isinstance(raw, dict):
            errors.append({"index": index, "code": ErrorCode.INVALID_ITEM,
                           "message": "each sample must be a JSON object"})
            continue
        unknown = set(raw) - {"external_id", "content", "uri", "metadata"}
        external_id = raw.get("external_id", "")
        content, uri, metadata = raw.get("content"), raw.get("uri"), raw.get("metadata", {})
        problem = None
        if unknown:
            problem = f"unknown fields {sorted(unknown)}"
        elif not isinstance(external_id, (str, int)) or isinstance(external_id, bool):
            problem = "external_id must be a string"
        elif metadata is not None and not isinstance(metadata, dict):
            problem = "metadata must be a JSON object"
        elif content is not None and not isinstance(content, str):
            problem = "content must be a base64 string"
        elif uri is not None and not isinstance(uri, str):
            problem = "uri must be a string"
        if problem is None and content is not None:
            try:
                content = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                problem = "content is not valid base64"
        if problem:
            errors.append({"index": index, "code": ErrorCode.INVALID_ITEM, "message": problem})
            continue
        items.append(IngestItem(external_id=str(external_id), content=content, uri=uri, metadata=metadata or {}))
    if errors:
        raise ValidationFailed(f"{len(errors)} samples are malformed; nothing was stored. First: samples[{errors[0]['index']}]: "
                               f"{errors[0]['message']}", code=ErrorCode.INVALID_SAMPLES, details={"errors": errors})
    return items, predict


def _parse_multipart(request) -> tuple[list[IngestItem], bool]:
    upload = request.FILES.get("file")
    if upload is None:
        raise ValidationFailed("A multipart push needs a 'file' part.", code=ErrorCode.INVALID_BODY)
    try:
        metadata = json.loads(request.data.get("metadata") or "{}")
    except ValueError:
        raise ValidationFailed("metadata must be a JSON object string.", code=ErrorCode.INVALID_METADATA)
    predict = str(request.data.get("predict", "false")).lower() in ("1", "true", "yes")
    return [IngestItem(external_id=request.data.get("external_id", "") or "", content=upload.read(),
                       metadata=metadata)], predict


def _push_fingerprint(request) -> str:
    """What makes two pushes "the same request" for Idempotency-Key: the body for JSON; for multipart
    the file's bytes and the fields (the random boundary of each retry must not count)."""
    if not request.content_type.startswith("multipart/"):
        return request_fingerprint(request.body)
    upload = request.FILES.get("file")
    digest = hashlib.sha256()
    if upload is not None:
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
    fields = json.dumps({k: request.data.get(k) for k in ("external_id", "metadata", "predict")}, sort_keys=True)
    return request_fingerprint(digest.hexdigest().encode() + fields.encode())


_METADATA_FILTER_HELP = (
    "Metadata filters, one query parameter each, all of them must hold: `metadata.<key>=<value>` keeps the samples "
    "whose metadata has `<key>` equal to the value (a value that reads as a JSON number, true, false or null is "
    "compared as one, anything else as text), and `metadata.<key>:<op>=<value>` applies an operator: "
    + "; ".join(f"`{op}` {text}" for op, text in METADATA_OPERATORS.items())
    + ". Range operators compare numbers (and numeric text) only. The key is always a JSON key, never a query "
    "operator: `metadata.regex=x` is the key `regex`. The operator follows the last `:`, so a key containing `:` "
    "needs an explicit `:eq`. An unknown operator answers 400 `unknown_filter_operator`; a bad key or value 422 "
    f"`invalid_filter`. At most {MAX_METADATA_FILTERS} filters. Examples: `metadata.time_of_day=night`, "
    "`metadata.speed:gte=50&metadata.speed:lt=80`, `metadata.camera:in=front,rear`."
)
# Described as one exploded object whose property names are the query parameters, so that a client generated
# from the schema (or a fuzzer) sends metadata filters. OpenAPI 3.0 cannot state a pattern for property names:
# the properties listed are examples, and any other ``metadata.<key>[:<op>]`` parameter is accepted too.
_METADATA_FILTER_EXAMPLES = ("metadata.time_of_day", "metadata.speed", "metadata.speed:gte", "metadata.speed:lt",
                             "metadata.camera:in", "metadata.regex")
_METADATA_FILTER_SCHEMA = {
    "type": "object",
    "properties": {name: {"anyOf": [{"type": "number"}, {"type": "string"}]} for name in _METADATA_FILTER_EXAMPLES},
    "additionalProperties": {"type": "string"},
}


class SampleListPush(ProjectScopedView):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        request={"application/json": PushIn, "multipart/form-data": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}, "external_id": {"type": "string"},
            "metadata": {"type": "string", "description": "JSON object"}, "predict": {"type": "boolean"}}}},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="same key + same body replays the first response; another body → 409")],
        responses={201: PushOut}, summary="Push samples (multipart file or a JSON batch of up to 1,000)")
    def post(self, request, project_id):
        project = self.project(request, project_id, Role.LEAD)
        fingerprint = _push_fingerprint(request)

        def call():
            if request.content_type.startswith("multipart/"):
                items, predict = _parse_multipart(request)
            else:
                items, predict = _parse_json_batch(request.data)
            return status.HTTP_201_CREATED, {"samples": samples_ingest(project=project, items=items, predict=predict)}

        code, body, replayed = idempotent_call(user=request.user, scope=f"samples:{project.pk}",
                                               key=request.headers.get("Idempotency-Key"),
                                               fingerprint=fingerprint, call=call)
        response = Response(body, status=code)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        parameters=[OpenApiParameter("split", str, enum=["train", "val", "test"]), OpenApiParameter("labeled", bool),
                    OpenApiParameter("low_confidence", bool), OpenApiParameter("external_id", str),
                    OpenApiParameter("metadata", _METADATA_FILTER_SCHEMA, style="form", explode=True,
                                     description="`metadata.<key>[:<op>]=<value>` filters, described above; the properties "
                                                 "listed are examples, any key and operator may be sent")],
        responses=SampleOut(many=True), summary="List samples with filters", description=_METADATA_FILTER_HELP)
    def get(self, request, project_id):
        project = self.project(request, project_id)
        params = request.query_params
        metadata = {key[len("metadata."):]: value for key, value in params.items() if key.startswith("metadata.")}
        qs = samples_filter(project=project, split=params.get("split"), labeled=query_bool(params.get("labeled"), "labeled"),
                            low_confidence=query_bool(params.get("low_confidence"), "low_confidence"),
                            external_id=params.get("external_id"), metadata=metadata)
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(SampleOut(page, many=True).data)


class SampleDetail(ProjectScopedView):
    @extend_schema(responses=SampleOut, summary="One sample")
    def get(self, request, sample_id):
        sample = sample_get(sample_id=sample_id)
        self.check_object_project(request, sample)
        return Response(SampleOut(sample).data)


class SampleContent(ProjectScopedView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes}, summary="The sample's file")
    def get(self, request, sample_id):
        sample = sample_get(sample_id=sample_id)
        self.check_object_project(request, sample)
        data = content_io.read_content(sample)  # ContentUnavailable answers 409 content_unavailable
        content_type = _MIME.get(sample.content_format.upper(), "application/octet-stream")
        response = _ranged(request, data, content_type)
        response["Cache-Control"] = "private, max-age=3600"
        response["Accept-Ranges"] = "bytes"
        return response


def _ranged(request, data: bytes, content_type: str) -> HttpResponse:
    """Honour a single-range ``Range: bytes=a-b`` header (audio players seek with it)."""
    header = request.headers.get("Range", "")
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or match.groups() == ("", ""):
        return HttpResponse(data, content_type=content_type)
    size = len(data)
    first, last = match.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    if start >= size or start > end:
        response = HttpResponse(status=416, content_type=content_type)
        response["Content-Range"] = f"bytes */{size}"
        return response
    response = HttpResponse(data[start:end + 1], status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


class NeighbourOut(serializers.Serializer):
    distance = serializers.FloatField()
    sample = SampleOut()


class SimilarOut(serializers.Serializer):
    sample = serializers.IntegerField()
    space = serializers.CharField()
    results = NeighbourOut(many=True)


class SampleSimilar(ProjectScopedView):
    @extend_schema(parameters=[OpenApiParameter("k", int)], responses=SimilarOut,
                   summary="Nearest samples in embedding space")
    def get(self, request, sample_id):
        sample = sample_get(sample_id=sample_id)
        self.check_object_project(request, sample)
        try:
            k = max(1, min(100, int(request.query_params.get("k", 10))))
        except ValueError:
            raise ValidationFailed("k must be an integer.", code=ErrorCode.INVALID_K)
        if not sample.embedding_space:
            raise Conflict("This sample has no embedding yet; try again shortly.", code=ErrorCode.NOT_EMBEDDED)
        neighbours, _ = samples_similar(sample=sample, k=k)
        results = [{"distance": distance, "sample": SampleOut(other).data} for other, distance in neighbours]
        return Response({"sample": sample.pk, "space": sample.embedding_space, "results": results})
