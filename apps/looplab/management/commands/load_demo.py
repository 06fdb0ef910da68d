"""Load the demo: users lead/annotator and one project per modality and task type. Safe to re-run.

The classification projects (digits, spoken digits, 3D shapes) get their first `auto` round queued for the
worker. The detection, audio-regions, point-segmentation and cuboids projects go one loop further, in this
process, so their tools show a model's pre-annotations from the start: the first round is selected and labeled
from the fixture's ground truth as the demo annotator, a training run of the project's default learner goes
through the real pipeline (train → evaluate → export → gate, the Celery tasks run eagerly here) and is deployed
by the gate, then a second `auto` round is selected by that model's uncertainty, its tasks carrying its
predictions (Task.prediction). ``--no-train`` skips that (their first round is queued as for classification).
An existing project is left as it is.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.accounts.services import user_create, user_set_role
from apps.labeling.crops import crops_send
from apps.labeling.services import annotation_submit, round_create, task_lease_next
from apps.looplab.celery import app
from apps.projects.models import Project
from apps.projects.services import membership_set, project_create
from apps.samples.services import IngestItem, samples_ingest
from apps.training.services import training_run_create

USERS = {"lead": ("lead", "looplab-lead"), "annotator": ("annotator", "looplab-annotator")}
DIGITS_PROJECT = "Digits (demo)"
DETECTION_LABELS = ("0", "1", "4", "7")  # the subset bench.label_efficiency uses: a small detector learns it fast


# items(n) -> [(external_id, content, metadata, ground truth or None)]

def _digits_items(n):
    from fixtures.digits import digits_pngs

    return [(f"digit-{i:04d}", png, {"source": "sklearn-digits", "scanner": "a" if i % 3 else "b"}, None)
            for i, (png, _) in enumerate(digits_pngs()[:n])]


def _speech_items(n):
    from fixtures.speech import spoken_digits

    clips = spoken_digits(max(1, n // 10))
    return [(f"utt-{i:04d}", wav, {"source": "espeak-ng"}, None) for i, (wav, _) in enumerate(clips[:n])]


def _shape_items(n):
    from fixtures.shapes import shapes

    clouds = shapes(max(1, n // 8))
    return [(f"shape-{i:04d}", ply, {"source": "open3d-primitives"}, None) for i, (ply, _) in enumerate(clouds[:n])]


def _scene_items(n):
    from fixtures.detection import detection_scenes

    # 96 px scenes of 1-4 handwritten digits on textured backgrounds, with their boxes
    return [(f"scene-{i:03d}", png, {"source": "fixtures.detection", "camera": "a" if i % 4 else "b"},
             truth) for i, (png, truth) in enumerate(detection_scenes(n, labels=DETECTION_LABELS))]


def _clip_items(n):
    from fixtures.regions import region_clips

    # noisy clips with spoken "one", "three", "seven" at known times (espeak-ng voices), with their regions
    return [(f"clip-{i:03d}", wav, {"source": "fixtures.regions"}, truth)
            for i, (wav, truth) in enumerate(region_clips(n))]


def _part_items(n):
    from fixtures.shapes import part_items

    # lamps (base, pole, shade) of 600-1024 noisy points, every point labeled
    return [(f"lamp-{i:03d}", ply, {"source": "open3d-lamp"}, truth)
            for i, (ply, truth) in enumerate(part_items(n, unlabeled=0.0))]


def _cuboid_items(n):
    from fixtures.cuboids import cuboid_scenes

    # ground patches with 3-5 boxes, cylinders and spheres, with their oriented boxes
    return [(f"scene-{i:03d}", ply, {"source": "open3d-primitives"}, truth)
            for i, (ply, truth) in enumerate(cuboid_scenes(n))]


@dataclass(frozen=True)
class Demo:
    name: str
    modality: str
    task_type: str
    labels: list[str]
    items: Callable[[int], list]
    n: int  # samples ingested
    first_round: int  # the first round's budget
    auto_deploy: bool = True
    # the projects trained at load time: the learner's params (small, so a run takes seconds on 2 CPU cores),
    # the second round's budget and the sizes --small uses (tests)
    params: dict | None = None
    second_round: int = 0
    small: tuple[int, int, int] = (0, 0, 0)  # n, first round, second round
    small_params: dict | None = None  # what --small changes in params
    split_ratios: dict | None = None
    crops_to: str = ""  # a classification project that gets this project's labeled objects as crops


CROPS_ROUND = 20
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}  # trained demos: enough test samples for a readable eval report

DEMO_PROJECTS = [
    Demo(DIGITS_PROJECT, "image", "classification", [str(i) for i in range(10)], _digits_items, 600, 50),
    Demo("Spoken digits (demo)", "audio", "classification",
         ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], _speech_items, 200, 40),
    Demo("Shapes 3D (demo)", "pointcloud", "classification",
         ["box", "sphere", "cylinder", "cone", "torus", "tetrahedron", "octahedron", "arrow"], _shape_items, 160, 40),
    # score_threshold 0.3: about as many pre-annotated boxes as a scene holds digits (1-4); at the learner's
    # default 0.1 the first model drew about 9 a scene, most of them faint false positives
    # (--small trains a weaker model on fewer scenes: the default threshold, so its rounds still show boxes)
    Demo("Digit scenes (demo)", "image", "detection", list(DETECTION_LABELS), _scene_items, 120, 60,
         params={"epochs": 40, "image_size": 64, "width": 16, "batch_size": 8, "score_threshold": 0.3},
         second_round=20,
         small=(40, 24, 8), small_params={"epochs": 20, "score_threshold": 0.1}, split_ratios=SPLITS,
         crops_to="Digit crops (demo)"),
    Demo("Spoken words (demo)", "audio", "audio_regions", ["one", "three", "seven"], _clip_items, 60, 30,
         params={"epochs": 12, "batch_size": 8, "width": 32}, second_round=15,
         small=(30, 20, 6), small_params={"epochs": 6},
         split_ratios=SPLITS),
    Demo("Lamp parts (demo)", "pointcloud", "point_segmentation", ["base", "pole", "shade"], _part_items, 50, 25,
         params={"epochs": 15, "n_points": 256, "draws": 1, "batch_size": 8,
                 "arch": {"global_dim": 128, "embed_dim": 64}}, second_round=12,
         small=(30, 20, 6), small_params={"epochs": 4},
         split_ratios=SPLITS),
    Demo("Street objects 3D (demo)", "pointcloud", "cuboids", ["box", "cylinder", "sphere"], _cuboid_items, 40, 24,
         params={"epochs": 10, "n_points": 512, "draws": 2, "batch_size": 4,
                 "arch": {"global_dim": 128, "embed_dim": 64}}, second_round=10,
         small=(30, 20, 6), small_params={"epochs": 4},
         split_ratios=SPLITS),
]
TASK_TYPES = sorted({d.task_type for d in DEMO_PROJECTS})


@contextlib.contextmanager
def _jobs_in_process():
    """Run the jobs queued inside the block in this process (the Celery tasks, eagerly), as the tests do."""
    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = old


class Command(BaseCommand):
    help = "Create the demo users and projects (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--only-digits", action="store_true", help="just the image classification project")
        parser.add_argument("--task-types", default="",
                            help=f"comma-separated task types to load (of {', '.join(TASK_TYPES)}); default all")
        parser.add_argument("--no-train", action="store_true",
                            help="skip labeling and training the detection/regions/segmentation/cuboids projects "
                                 "(their first round is queued for the worker instead): a fast start")
        parser.add_argument("--small", action="store_true",
                            help="fewer samples, smaller rounds and fewer epochs (tests)")

    def handle(self, *args, only_digits, task_types, no_train, small, **options):
        wanted = {t.strip() for t in task_types.split(",") if t.strip()}
        if wanted - set(TASK_TYPES):
            raise CommandError(f"unknown task types {sorted(wanted - set(TASK_TYPES))}; known: {TASK_TYPES}")
        demos = DEMO_PROJECTS[:1] if only_digits else [d for d in DEMO_PROJECTS if not wanted or d.task_type in wanted]
        users = {name: self._user(name, role, password) for name, (role, password) in USERS.items()}
        started = time.monotonic()
        for demo in demos:
            project = Project.objects.filter(name=demo.name).first()
            if project is not None:
                self.stdout.write(f"project {project.pk}: {project.name} exists; left as it is")
            else:
                project = self._project(users, demo, train=not no_train and demo.params is not None, small=small)
            # the lead made the project and stays its admin (a project always keeps one)
            membership_set(project=project, user=users["lead"], role="admin")
            membership_set(project=project, user=users["annotator"], role="annotator")
        self.stdout.write(f"demo loaded in {time.monotonic() - started:.0f} s")
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

    def _project(self, users, demo: Demo, *, train: bool, small: bool):
        n, first, second = demo.small if small and demo.small[0] else (demo.n, demo.first_round, demo.second_round)
        items = demo.items(n)
        with contextlib.ExitStack() as stack:
            if train:  # the embedding jobs, the rounds and the training run run here, in order
                stack.enter_context(_jobs_in_process())
            with transaction.atomic():
                project = project_create(user=users["lead"], name=demo.name, modality=demo.modality,
                                         task_type=demo.task_type, labels=demo.labels,
                                         label_budget=max(400, 2 * n // 3), confidence_threshold=0.7,
                                         auto_deploy=demo.auto_deploy, split_ratios=demo.split_ratios)
                membership_set(project=project, user=users["annotator"], role="annotator")
                for start in range(0, len(items), 500):
                    samples_ingest(project=project, items=[IngestItem(external_id=ext, content=data, metadata=meta)
                                                           for ext, data, meta, _ in items[start:start + 500]])
                if not train:
                    round_create(project=project, user=users["lead"], budget=first, strategy="auto")
            self.stdout.write(f"created project {project.pk}: {project.name} ({demo.task_type}) with "
                              f"{project.samples.count()} samples")
            if train:
                params = dict(demo.params, **(demo.small_params or {})) if small else demo.params
                self._first_loop(project, users, params, {ext: truth for ext, _, _, truth in items}, first, second)
                if demo.crops_to:
                    self._crops(project, users, demo)
        return project

    def _crops(self, project, users, demo: Demo) -> None:
        """The derived-samples pipeline: the detection project's labeled objects, as crops, in a classification
        project (each linked to its scene, on its scene's split), with a first auto round among them."""

        if Project.objects.filter(name=demo.crops_to).exists():
            self.stdout.write(f"  {demo.crops_to} exists; left as it is")
            return
        child = project_create(user=users["lead"], name=demo.crops_to, modality=project.modality,
                               task_type="classification", labels=list(demo.labels), label_budget=400,
                               confidence_threshold=0.7, auto_deploy=True)
        membership_set(project=child, user=users["annotator"], role="annotator")
        sent = crops_send(project=project, target=child, source="labels", padding=0.15)
        rnd = self._round(child, users["lead"], min(CROPS_ROUND, sent["created"])) if sent["created"] else None
        self.stdout.write(f"created project {child.pk}: {child.name}: {sent['created']} crops of the "
                          f"{sent['objects']} labeled objects of {project.name}"
                          + (f"; round {rnd.number} queued ({rnd.selected} tasks)" if rnd else ""))

    def _first_loop(self, project, users, params: dict, truth: dict, first: int, second: int) -> None:
        """Round 1 labeled from the fixture's ground truth, a run of the default learner (deployed by the gate),
        round 2 selected by the model with its predictions as pre-annotations. Jobs run in this process."""
        from django.conf import settings


        if settings.LOOPLAB["TORCH_THREADS"]:  # as in the worker: one torch thread per process
            import torch

            torch.set_num_threads(settings.LOOPLAB["TORCH_THREADS"])
        lead, annotator = users["lead"], users["annotator"]
        rnd = self._round(project, lead, first)
        labeled = 0
        while (task := task_lease_next(project=project, user=annotator)) is not None:
            annotation_submit(task=task, user=annotator, result=truth[task.sample.external_id], active_seconds=5.0)
            labeled += 1
        self.stdout.write(f"  round {rnd.number}: {labeled} tasks labeled from the fixture's ground truth "
                          f"as {annotator.username}")
        t0 = time.monotonic()
        run = training_run_create(project=project, user=lead, params=params)
        run.refresh_from_db()
        if run.status != "succeeded":
            self.stderr.write(f"  training run {run.pk} {run.status}: {run.message}\n{run.error}")
            return
        mv = run.model
        report = mv.eval_report or {}
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in (report.get("metrics") or {}).items()
                            if isinstance(v, float) and 0 <= v <= 1)  # the scores, not the counts
        self.stdout.write(f"  training run {run.number} ({run.config['learner']}, {time.monotonic() - t0:.0f} s): "
                          f"model {mv.pk} v{mv.version}, {metrics}; {run.message}")
        rnd = self._round(project, lead, second)
        self.stdout.write(f"  round {rnd.number} queued by {rnd.strategy_used}: {rnd.tasks.count()} tasks "
                          f"pre-annotated by model {mv.pk}")

    def _round(self, project, lead, budget):
        rnd = round_create(project=project, user=lead, budget=budget, strategy="auto")
        rnd.refresh_from_db()
        if rnd.status != "succeeded":
            raise CommandError(f"round {rnd.pk} of {project.name} {rnd.status}: {rnd.error}")
        return rnd
