"""The embedded default's data dir is its user's only: the SQLite database, stored samples and everything else
written under LOOPLAB_DATA_DIR are 0600, its directories 0700 (issue 11: "the embedded SQLite file is
world-readable")."""
import stat
import subprocess
import sys
from pathlib import Path

from tests.apps.core.embedded import embedded_env

ROOT = Path(__file__).resolve().parents[3]

PUSH = """
from apps.accounts.services import user_create
from apps.projects.services import project_create
from apps.samples.models import Sample
from apps.samples.services import IngestItem, samples_ingest
from fixtures.digits import digits_pngs

lead = user_create(username="lead", password="pw-lead-1234", role="lead")
project = project_create(user=lead, name="digits", modality="image", labels=[str(i) for i in range(10)],
                         label_budget=10, confidence_threshold=0.7)
png, _ = digits_pngs()[0]
samples_ingest(project=project, items=[IngestItem(external_id="d0", content=png)])
print(Sample.objects.get(project=project).file.path)
"""


def _manage(*args, data: Path) -> str:
    # started with a shell's usual mask (this test process has the settings' 077 already)
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=embedded_env(data), umask=0o022,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_stored_files_are_private(tmp_path):
    data = tmp_path / "data"
    _manage("migrate", "--noinput", data=data)
    sample_file = Path(_manage("shell", "-c", PUSH, data=data).strip().splitlines()[-1])
    database = data / "looplab.sqlite3"

    assert database.exists() and sample_file.is_relative_to(data / "media")
    assert oct(_mode(database)) == oct(0o600)
    assert oct(_mode(sample_file)) == oct(0o600)
    assert oct(_mode(data)) == oct(0o700)
    everything = list(data.rglob("*"))
    assert len(everything) > 10  # database, secret key, broker folders, static files, the sample
    loose = {str(p.relative_to(data)): oct(_mode(p)) for p in everything
             if _mode(p) != (0o700 if p.is_dir() else 0o600)}
    assert loose == {}


def test_a_database_made_world_readable_before_is_made_private_at_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    database = data / "looplab.sqlite3"
    database.touch(mode=0o644)
    database.chmod(0o644)
    _manage("check", data=data)
    assert oct(_mode(database)) == oct(0o600)
