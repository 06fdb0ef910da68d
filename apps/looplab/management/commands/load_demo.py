"""Load the demo: users lead/annotator and an image project from scikit-learn's digits. Safe to re-run."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.services import user_create, user_set_role
from apps.labeling.services import round_create
from apps.projects.models import Project
from apps.projects.services import membership_set, project_create
from apps.samples.services import IngestItem, samples_ingest

USERS = {"lead": ("lead", "looplab-lead"), "annotator": ("annotator", "looplab-annotator")}
DIGITS_PROJECT = "Digits (demo)"


def _digits_items(n):
    from fixtures.digits import digits_pngs

    return [(f"digit-{i:04d}", png, {"source": "sklearn-digits", "scanner": "a" if i % 3 else "b"})
            for i, (png, _) in enumerate(digits_pngs()[:n])]


def _speech_items(n):
    from fixtures.speech import spoken_digits

    clips = spoken_digits(max(1, n // 10))
    return [(f"utt-{i:04d}", wav, {"source": "espeak-ng"}) for i, (wav, _) in enumerate(clips[:n])]


def _shape_items(n):
    from fixtures.shapes import shapes

    clouds = shapes(max(1, n // 8))
    return [(f"shape-{i:04d}", ply, {"source": "open3d-primitives"}) for i, (ply, _) in enumerate(clouds[:n])]


def _part_items(n):
    from fixtures.shapes import encode_points, part_shapes

    return [(f"lamp-{i:03d}", encode_points(points), {"source": "open3d-lamp"}) for i, (points, _) in enumerate(part_shapes(n))]


def _detection_items(n):
    from fixtures.digits import digits_pngs

    # The same digits at 128 px, for drawing boxes and polygons around the strokes.
    return [(f"digit-big-{i:03d}", png, {"source": "sklearn-digits"})
            for i, (png, _) in enumerate(digits_pngs(size=128)[:n])]


# name, modality, task type, labels, items(n), n, first round budget, auto deploy
DEMO_PROJECTS = [
    (DIGITS_PROJECT, "image", "classification", [str(i) for i in range(10)], _digits_items, 600, 50, True),
    ("Spoken digits (demo)", "audio", "classification",
     ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], _speech_items, 200, 40, True),
    ("Shapes 3D (demo)", "pointcloud", "classification",
     ["box", "sphere", "cylinder", "cone", "torus", "tetrahedron", "octahedron", "arrow"], _shape_items, 160, 40, True),
    ("Digit strokes (demo)", "image", "detection", [str(i) for i in range(10)], _detection_items, 40, 20, False),
    ("Lamp parts (demo)", "pointcloud", "point_segmentation", ["base", "pole", "shade"], _part_items, 12, 6, False),
]


class Command(BaseCommand):
    help = "Create the demo users and projects (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--only-digits", action="store_true", help="just the image classification project")

    def handle(self, *args, only_digits, **options):
        users = {name: self._user(name, role, password) for name, (role, password) in USERS.items()}
        for spec in DEMO_PROJECTS[:1] if only_digits else DEMO_PROJECTS:
            project = Project.objects.filter(name=spec[0]).first()
            if project is None:
                project = self._project(users, *spec)
                self.stdout.write(f"created project {project.pk}: {project.name} with {project.samples.count()} samples")
            else:
                self.stdout.write(f"project {project.pk}: {project.name} exists; left as it is")
            # the lead made the project and stays its admin (a project always keeps one)
            membership_set(project=project, user=users["lead"], role="admin")
            membership_set(project=project, user=users["annotator"], role="annotator")
        self.stdout.write("")
        self.stdout.write("Log in at http://127.0.0.1:8000/ as:")
        for name, (role, password) in USERS.items():
            self.stdout.write(f"  {name:<10} password {password:<20} ({role})")

    def _user(self, username, role, password):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            user = user_create(username=username, password=password, role=role)
        else:
            user_set_role(user=user, role=role)
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    def _project(self, users, name, modality, task_type, labels, items_fn, n, first_round, auto_deploy):
        items = items_fn(n)
        with transaction.atomic():
            project = project_create(user=users["lead"], name=name, modality=modality, task_type=task_type,
                                     labels=labels, label_budget=max(400, 2 * n // 3), confidence_threshold=0.7,
                                     auto_deploy=auto_deploy)
            for start in range(0, len(items), 500):
                samples_ingest(project=project, items=[IngestItem(external_id=ext, content=data, metadata=meta)
                                                       for ext, data, meta in items[start:start + 500]])
            if first_round:
                round_create(project=project, user=users["lead"], budget=first_round, strategy="auto")
        return project
