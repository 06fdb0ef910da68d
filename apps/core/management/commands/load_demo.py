"""Load the demo: users lead/annotator and an image project from scikit-learn's digits. Safe to re-run."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.services import user_create, user_set_role
from apps.projects.models import Project
from apps.projects.services import membership_set, project_create

USERS = {"lead": ("lead", "looplab-lead"), "annotator": ("annotator", "looplab-annotator")}
DIGITS_PROJECT = "Digits (demo)"


class Command(BaseCommand):
    help = "Create the demo users and projects (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--samples", type=int, default=600, help="digits images to push into the demo project")
        parser.add_argument("--first-round", type=int, default=50, help="budget of the first selection round (0: none)")

    def handle(self, *args, samples, first_round, **options):
        users = {name: self._user(name, role, password) for name, (role, password) in USERS.items()}
        project = Project.objects.filter(name=DIGITS_PROJECT).first()
        if project is None:
            project = self._digits_project(users, samples, first_round)
            self.stdout.write(f"created project {project.pk}: {project.name} with {project.samples.count()} samples")
        else:
            self.stdout.write(f"project {project.pk}: {project.name} exists; left as it is")
        membership_set(project=project, user=users["lead"], role="lead")
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

    def _digits_project(self, users, n, first_round):
        from fixtures.digits import digits_pngs

        from apps.labeling.services import round_create
        from apps.samples.services import IngestItem, samples_ingest

        with transaction.atomic():
            project = project_create(user=users["lead"], name=DIGITS_PROJECT, modality="image",
                                     labels=[str(i) for i in range(10)], label_budget=400,
                                     confidence_threshold=0.7, auto_deploy=True)
            pngs = digits_pngs()[:n]
            for start in range(0, len(pngs), 500):
                samples_ingest(project=project, items=[
                    IngestItem(external_id=f"digit-{i:04d}", content=png,
                               metadata={"source": "sklearn-digits", "scanner": "a" if i % 3 else "b"})
                    for i, (png, _) in enumerate(pngs[start:start + 500], start=start)])
            if first_round:
                round_create(project=project, user=users["lead"], budget=first_round, strategy="auto")
        return project
