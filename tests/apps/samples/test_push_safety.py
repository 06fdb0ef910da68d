"""Every push path refuses what the database cannot store, with the field's path, and reads URIs the way it
checked them: NUL and unpaired surrogates in external_id, uri and metadata (keys and values, any depth), on
JSON and multipart pushes; URI schemes in any case."""
import json

import pytest

from tests.conftest import b64


def _url(project):
    return f"/api/v1/projects/{project.id}/samples/"


def _refused(r, field):
    assert r.status_code == 422, (r.status_code, r.content)
    error = r.json()["error"]
    assert error["code"] == "invalid_samples"
    (item,) = error["details"]["errors"]
    assert item["code"] == "invalid_text" and item["field"] == field, item
    assert field in error["message"]
    return item


@pytest.mark.parametrize("sample,field", [
    ({"external_id": "a\x00b"}, "samples[0].external_id"),
    ({"metadata": {"camera": "front\x00"}}, "samples[0].metadata.camera"),
    ({"metadata": {"ca\x00mera": "front"}}, "samples[0].metadata.ca\\u0000mera"),
    ({"metadata": {"deep": {"list": [1, "ok", {"x": "\x00"}]}}}, "samples[0].metadata.deep.list[2].x"),
    ({"metadata": {"note": "\ud800"}}, "samples[0].metadata.note"),  # an unpaired surrogate
    ({"external_id": "\udfff"}, "samples[0].external_id"),
])
def test_json_push_refuses_text_the_database_cannot_store(api, lead, project, digits, sample, field):
    from apps.samples.models import Sample

    good = {"external_id": "fine", "content": b64(digits[1][0])}
    body = {"samples": [{"content": b64(digits[0][0]), **sample}, good]}
    # sent as JSON text with \u escapes, as any client would (raw surrogates cannot even be encoded)
    r = api(lead).post(_url(project), data=json.dumps(body), content_type="application/json")
    _refused(r, field)
    assert Sample.objects.filter(project=project).count() == 0  # all or nothing


def test_json_push_refuses_nul_in_a_uri(api, lead, project):
    r = api(lead).post(_url(project), {"samples": [{"uri": "s3://bucket/a\x00.png"}]}, format="json")
    _refused(r, "samples[0].uri")


@pytest.mark.parametrize("fields,field", [
    ({"external_id": "x\x00y"}, "samples[0].external_id"),
    ({"metadata": json.dumps({"k\u0000": 1})}, "samples[0].metadata.k\\u0000"),
    ({"metadata": json.dumps({"k": ["a", "b\u0000"]})}, "samples[0].metadata.k[1]"),
    ({"metadata": json.dumps({"k": "\ud800"})}, "samples[0].metadata.k"),
])
def test_multipart_push_refuses_text_the_database_cannot_store(api, lead, project, digits, fields, field):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.samples.models import Sample

    upload = SimpleUploadedFile("digit.png", digits[0][0], content_type="image/png")
    r = api(lead).post(_url(project), {"file": upload, **fields}, format="multipart")
    _refused(r, field)
    assert Sample.objects.filter(project=project).count() == 0
    # the same push without the bad text is stored (on PostgreSQL, where NUL was a 500)
    upload = SimpleUploadedFile("digit.png", digits[0][0], content_type="image/png")
    r = api(lead).post(_url(project), {"file": upload, "external_id": "x", "metadata": '{"k": "v"}'},
                       format="multipart")
    assert r.status_code == 201, r.content


def test_the_service_refuses_it_too(project, digits):
    from apps.core.errors import ValidationFailed
    from apps.samples.services import IngestItem, samples_ingest

    with pytest.raises(ValidationFailed) as refused:
        samples_ingest(project=project, items=[IngestItem(external_id="ok", content=digits[0][0],
                                                          metadata={"a": {"b\x00": 1}})])
    assert refused.value.details["errors"][0]["field"] == "samples[0].metadata.a.b\\u0000"


@pytest.mark.parametrize("scheme", ["file", "FILE", "File", "fIlE"])
def test_file_uris_are_checked_in_any_case(api, lead, project, settings, tmp_path, digits, scheme):
    c = api(lead)
    refused = c.post(_url(project), {"samples": [{"uri": f"{scheme}:///etc/passwd"}]}, format="json")
    assert refused.status_code == 422, refused.content
    (item,) = refused.json()["error"]["details"]["errors"]
    assert item["code"] == "uri_not_allowed"
    settings.LOOPLAB = dict(settings.LOOPLAB, URI_ROOTS=[str(tmp_path)])
    good = tmp_path / "good.png"
    good.write_bytes(digits[3][0])
    r = c.post(_url(project), {"samples": [{"uri": f"{scheme}://{good}"}]}, format="json")
    assert r.status_code == 201, r.content
    content = c.get(f"/api/v1/samples/{r.json()['samples'][0]['id']}/content/")
    assert content.status_code == 200 and b"".join(content) == digits[3][0]


def test_a_uri_read_as_file_is_checked_as_file(api, lead, project):
    # what urllib reads as file:// (leading space, a newline inside the scheme) is checked as file:// too
    from apps.samples import content as content_io

    for uri in (" file:///etc/passwd", "fi\nle:///etc/passwd", "FILE:///etc/passwd"):
        assert content_io.uri_scheme(uri) == "file"
        r = api(lead).post(_url(project), {"samples": [{"uri": uri}]}, format="json")
        assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["code"] == "uri_not_allowed", uri
