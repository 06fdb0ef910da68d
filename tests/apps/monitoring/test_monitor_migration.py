"""The migration that moved a project's drift settings into its DriftMonitor (monitoring 0001, projects 0005):
every project's values arrive in its monitor, and migrating back puts them on the project again."""
from datetime import datetime, timezone

from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("monitoring", None)]  # the monitoring app unapplied: the settings are the project's fields
BEFORE_STATE = [("projects", "0004_webhook_secret_rotation"), ("serving", "0004_job_runner")]
ROTATED = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
SETTINGS = {"drift_check_hours": 6, "drift_auto_flag": True, "drift_webhook_url": "https://hooks.example.com/looplab",
            "drift_webhook_secret": "a" * 64, "drift_webhook_secret_previous": "b" * 64,
            "drift_webhook_secret_rotated_at": ROTATED}
DEFAULTS = {"drift_check_hours": None, "drift_auto_flag": False, "drift_webhook_url": "", "drift_webhook_secret": "",
            "drift_webhook_secret_previous": "", "drift_webhook_secret_rotated_at": None}


def _migrate(targets, state=None):
    """Migrate to ``targets`` and return the models as they are at ``state`` (default: ``targets``)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(state or targets).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_drift_settings_move_into_monitors_and_back(transactional_db):
    try:
        old = _migrate(BEFORE, BEFORE_STATE)
        Project = old.get_model("projects", "Project")
        watched = Project.objects.create(name="watched", modality="image", labels=["a", "b"], **SETTINGS)
        quiet = Project.objects.create(name="quiet", modality="image", labels=["a", "b"])
        ContentType.objects.clear_cache()  # contenttypes itself is never migrated back here
        check_type = ContentType.objects.get_or_create(app_label="serving", model="driftcheck")[0].pk

        new = _migrate(_latest())
        DriftMonitor = new.get_model("monitoring", "DriftMonitor")
        fields = list(SETTINGS)
        assert DriftMonitor.objects.filter(project_id=watched.pk).values(*fields).get() == SETTINGS
        assert DriftMonitor.objects.filter(project_id=quiet.pk).values(*fields).get() == DEFAULTS
        assert not any(f.name.startswith("drift_") for f in new.get_model("projects", "Project")._meta.fields)
        assert "serving_driftcheck" in connection.introspection.table_names()  # the checks kept their table
        ContentType.objects.clear_cache()
        assert ContentType.objects.get(app_label="monitoring", model="driftcheck").pk == check_type
        assert not ContentType.objects.filter(app_label="serving", model="driftcheck").exists()

        # unapplying only the projects' side puts the settings back on the projects
        partial = _migrate([("projects", "0004_webhook_secret_rotation")])
        Project = partial.get_model("projects", "Project")
        assert Project.objects.filter(pk=watched.pk).values(*fields).get() == SETTINGS
        assert Project.objects.filter(pk=quiet.pk).values(*fields).get() == DEFAULTS
        _migrate(_latest())

        old = _migrate(BEFORE, BEFORE_STATE)
        Project = old.get_model("projects", "Project")
        assert Project.objects.filter(pk=watched.pk).values(*fields).get() == SETTINGS
        assert Project.objects.filter(pk=quiet.pk).values(*fields).get() == DEFAULTS
        assert "monitoring_driftmonitor" not in connection.introspection.table_names()
        assert "serving_driftcheck" in connection.introspection.table_names()
        ContentType.objects.clear_cache()
        assert ContentType.objects.get(app_label="serving", model="driftcheck").pk == check_type
    finally:
        _migrate(_latest())


def test_a_project_without_a_monitor_has_the_defaults(db, project):
    """Projects made after the migration get their monitor with the first drift setting; until then the
    selector answers the defaults and writes nothing."""
    from apps.monitoring.models import DriftMonitor
    from apps.monitoring.selectors import drift_monitor_get
    from apps.monitoring.services import drift_monitor_update

    monitor = drift_monitor_get(project=project)
    assert monitor.pk is None and {f: getattr(monitor, f) for f in DEFAULTS} == DEFAULTS
    assert not DriftMonitor.objects.filter(project=project).exists()
    drift_monitor_update(project=project, drift_check_hours=12)
    assert drift_monitor_get(project=project).drift_check_hours == 12
