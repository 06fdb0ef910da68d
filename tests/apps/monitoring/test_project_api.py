"""The project API reads its drift fields from the projects' drift monitors (apps/monitoring/project_api.py)."""
from django.db import connection
from django.test.utils import CaptureQueriesContext


def test_the_project_list_reads_every_drift_monitor_in_one_query(api, lead):
    from apps.monitoring.services import drift_monitor_update
    from apps.projects.services import project_create

    projects = [project_create(user=lead, name=f"p{i}", modality="image", labels=["a", "b"]) for i in range(5)]
    for hours, project in zip((6, 12), projects):  # two with a monitor, three without (the defaults)
        drift_monitor_update(project=project, drift_check_hours=hours)
    client = api(lead)
    with CaptureQueriesContext(connection) as queries:
        r = client.get("/api/v1/projects/")
    assert r.status_code == 200, r.content
    assert {p["name"]: p["drift_check_hours"] for p in r.json()} == {"p0": 6, "p1": 12, "p2": None, "p3": None,
                                                                     "p4": None}
    monitor_reads = [q["sql"] for q in queries.captured_queries if "monitoring_driftmonitor" in q["sql"]]
    assert len(monitor_reads) == 1, monitor_reads
