"""LabelCheck moved from samples to labeling without touching its table: a check written before the move (by the
samples model, at the old migration state) is read after it by labeling's model and served by the API."""
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("samples", "0006_job_runner"), ("labeling", "0005_job_runner")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_a_label_check_from_before_the_move_is_read_after_it(transactional_db, api, lead, project):
    content_type = ContentType.objects.get(app_label="labeling", model="labelcheck")
    old = _migrate(BEFORE)
    OldLabelCheck = old.get_model("samples", "LabelCheck")
    assert OldLabelCheck._meta.db_table == "samples_labelcheck"
    finding = {"sample": 1, "external_id": "d-1", "content_url": "/api/v1/samples/1/content/", "annotation": None,
               "kind": "outlier", "score": 0.5, "reason": "far from its class", "label": "3",
               "suggested_label": None, "related": None}
    check = OldLabelCheck.objects.create(project_id=project.pk, created_by_id=lead.pk, limit=10, status="succeeded",
                                         progress=100.0, message="1 findings in 20 labeled samples",
                                         space="label_free:v2", n_checked=20, counts={"outlier": 1},
                                         findings=[finding])
    ContentType.objects.clear_cache()
    assert ContentType.objects.get(pk=content_type.pk).app_label == "samples"

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    from apps.labeling.models import LabelCheck

    assert "samples_labelcheck" in connection.introspection.table_names()
    moved = LabelCheck.objects.get(pk=check.pk)
    assert (moved.project_id, moved.created_by_id, moved.n_checked, moved.counts, moved.findings) == (
        project.pk, lead.pk, 20, {"outlier": 1}, [finding])
    ContentType.objects.clear_cache()
    assert ContentType.objects.get(pk=content_type.pk).app_label == "labeling"
    body = api(lead).get(f"/api/v1/label-checks/{check.pk}/").json()
    assert body["status"] == "succeeded" and body["findings"] == [{**finding, "review_status": None}]
    assert [c["id"] for c in api(lead).get(f"/api/v1/projects/{project.pk}/label-checks/").json()] == [check.pk]
