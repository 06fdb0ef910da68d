"""Selection rounds under a budget, the task queue (leases), and annotations."""
from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.errors import Conflict, ErrorCode, ValidationFailed
from apps.core.jobs import JobContext, job_enqueue
from apps.labeling.models import Annotation, ReviewStatus, Round, Task, TaskSkip, TaskState
from apps.labeling.results import validate_result
from apps.labeling.selectors import budget_summary
from apps.labeling.tasks import run_round
from apps.projects.models import Project
from apps.registry.runtime import learner_results, load_batch, model_runner
from apps.registry.selectors import current_deployment, model_checkpoint_load
from apps.samples import content as content_io
from apps.samples.models import Sample
from apps.samples.selectors import label_free_space
from apps.samples.services import samples_features, samples_predict

log = logging.getLogger(__name__)

CHUNK = 512
LABELED_FOR_COVERAGE = 5000
MC_SAMPLES = 10  # stochastic forward passes per sample for BALD


# -- rounds ---------------------------------------------------------------------------------------

def _constraint_options(project: Project, constraints: dict, samples: list[Sample],
                        probs: np.ndarray | None) -> tuple[dict, dict]:
    """ml.selection options for a cleaned constraints dict over these pool samples (``probs``: the deployed
    model's, for class quotas), and notes for the report (how many of the pool each quota could draw from)."""
    from ml.slices import slice_mask

    opts, notes = {}, {}
    metas = [s.metadata or {} for s in samples]
    slices = constraints.get("slices") or []
    if slices:
        opts["slices"] = {sl["name"]: slice_mask(metas, sl["where"]) for sl in slices}
        opts["slice_quotas"] = {sl["name"]: sl["min"] for sl in slices if sl["min"]}
        opts["slice_caps"] = {sl["name"]: sl["max"] for sl in slices if sl["max"] is not None}
        notes["slice_pool"] = {name: int(mask.sum()) for name, mask in opts["slices"].items()}
    classes = constraints.get("classes") or []
    if classes:
        index = project.label_index
        opts["class_quotas"] = {index[cl["label"]]: cl["min"] for cl in classes}
        opts["class_caps"] = {index[cl["label"]]: cl["max"] for cl in classes if cl["max"] is not None}
        if probs is not None:
            predicted = np.bincount(probs.argmax(axis=1), minlength=len(project.labels))
            notes["class_pool"] = {cl["label"]: int(predicted[index[cl["label"]]]) for cl in classes}
    cost = constraints.get("cost")
    if cost:
        def value(meta):  # a positive number that float32 holds (what ml.selection computes in), else NaN
            v = meta.get(cost["metadata_key"])
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                return np.nan
            v32 = np.float32(v) if np.isfinite(v) and abs(v) < 3e38 else np.float32(np.nan)
            return float(v32) if np.isfinite(v32) and v32 > 0 else np.nan

        values = np.array([value(m) for m in metas], dtype=np.float64)
        known = np.isfinite(values)
        values[~known] = float(np.median(values[known])) if known.any() else 1.0
        opts["cost"] = values
        if cost.get("max_total") is not None:
            opts["max_total_cost"] = cost["max_total"]
        notes["cost_imputed"] = int((~known).sum())  # no positive number there (missing, 0, text...): the median
    if "exclude_near_duplicates" in constraints:
        opts["dedup_threshold"] = constraints["exclude_near_duplicates"]
    return opts, notes


def _constraints_report(project: Project, constraints: dict, info: dict, notes: dict, *, train_budget: int) -> dict:
    """What the train split's constraints did: per quota/cap its count and shortfall (classes by label), how many
    of the pool it could draw from, the train budget, the cost spent and the near-duplicates skipped."""
    labels = list(project.labels)
    counts = {}
    for key, value in (info.get("constraints") or {}).items():
        kind, _, name = key.partition(":")
        counts[f"class:{labels[int(name)]}" if kind == "class" else key] = value
    report = {**notes, "train_budget": int(train_budget), "constraints": counts}
    if "total_cost" in info:
        report["total_cost"] = info["total_cost"]
    if "exclude_near_duplicates" in constraints:
        report["excluded_near_duplicates"] = int(info.get("excluded_near_duplicates", 0))  # 0: nothing labeled yet
    return report


def round_create(*, project: Project, user, budget: int, strategy: str = "auto",
                 constraints: dict | None = None) -> Round:
    """Queue a selection round of ``budget`` samples (a job; round_run does the work).

    ``constraints`` bind the train split's picks (val/test stay random, so evaluation stays unbiased):
    ``slices`` [{name, where: metadata predicate, min, max}], ``classes`` [{label, min, max}] by the deployed
    model's predicted class, ``cost`` {metadata_key, max_total} (cost-aware: uncertainty per unit of cost), and
    ``exclude_near_duplicates`` (cosine similarity to an already labeled sample)."""
    from ml.selection import MODEL_FREE_STRATEGIES, STRATEGIES, RoundConstraints

    if strategy not in STRATEGIES:
        raise ValidationFailed(f"Unknown strategy {strategy!r}.", code=ErrorCode.INVALID_STRATEGY,
                               details={"strategies": list(STRATEGIES)})
    has_model = current_deployment(project=project) is not None
    if strategy not in MODEL_FREE_STRATEGIES and not has_model:
        raise ValidationFailed(f"Strategy {strategy!r} scores samples with the deployed model, and none is deployed yet; "
                               f"use one of {', '.join(MODEL_FREE_STRATEGIES)} first.", code=ErrorCode.MODEL_REQUIRED,
                               details={"model_free_strategies": list(MODEL_FREE_STRATEGIES)})
    if not isinstance(budget, int) or budget < 1:
        raise ValidationFailed("budget must be a positive integer.", code=ErrorCode.INVALID_BUDGET)
    # the grammar is checked by ml.selection.RoundConstraints: InvalidConstraints (422 invalid_constraints)
    def classes_need_a_model():
        if not has_model:
            raise ValidationFailed("Class quotas count the deployed model's predicted classes, and no model is "
                                   "deployed yet.", code=ErrorCode.MODEL_REQUIRED)

    checked = RoundConstraints.parse(constraints, labels=project.labels, on_classes=classes_need_a_model)
    constraints = checked.to_dict()
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # serialise budget checks
        remaining = budget_summary(project=project)["remaining"]
        if budget > remaining:
            raise ValidationFailed(f"The project has {remaining} labels of budget left; this round asks for {budget}.",
                                   code=ErrorCode.BUDGET_EXCEEDED,
                                   details={"remaining": remaining, "requested": budget})
        number = (Round.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        rnd = Round.objects.create(project=project, number=number, strategy=strategy, budget=budget,
                                   constraints=constraints, created_by=user, message="queued")

        job_enqueue(rnd, run_round, rnd.pk)
    return rnd


def _allocate(budget: int, ratios: dict, available: dict) -> dict:
    """Split the budget over train/val/test by the project's ratios (largest remainder), capped by pools."""
    splits = ["train", "val", "test"]
    raw = {s: budget * float(ratios.get(s, 0.0)) for s in splits}
    alloc = {s: int(raw[s]) for s in splits}
    for s in sorted(splits, key=lambda s: raw[s] - alloc[s], reverse=True)[: budget - sum(alloc.values())]:
        alloc[s] += 1
    alloc = {s: min(alloc[s], available[s]) for s in splits}
    left = budget - sum(alloc.values())
    for s in splits:  # fill from wherever samples remain
        take = min(left, available[s] - alloc[s])
        alloc[s] += take
        left -= take
    return alloc


def _pool_features(project: Project, samples: list[Sample], runner, progress):
    """Embeddings (cached on the samples) and, with a deployed model, its scores for the pool.

    Returns (usable samples, embeddings, probs or None, uncertainty or None): ``probs`` the class probabilities of a
    classification model; ``uncertainty`` (N,) a learner version's per-sample acquisition score (any task type).
    Samples whose
    content cannot be read or decoded are marked with ``embed_error`` and left out of the round.
    """
    if runner is not None and runner.is_learner:
        return _pool_learned(project, samples, runner, progress)
    space = f"model:{runner.model_id}" if runner else label_free_space()
    vectors: dict[int, np.ndarray] = {}
    if runner is None:  # label-free embeddings are cached on the samples
        vectors = {s.pk: np.frombuffer(s.embedding, dtype=np.float32)
                   for s in samples if s.embedding_space == space and s.embedding}
    todo = [s for s in samples if s.pk not in vectors]
    probs_by_pk: dict[int, np.ndarray] = {}
    for start in range(0, len(todo), CHUNK):
        ok, new, probs = samples_features(project=project, samples=todo[start:start + CHUNK], runner=runner)
        changed = []
        for i, (sample, vector) in enumerate(zip(ok, new)):
            if sample.embedding_space != space:
                sample.embedding, sample.embedding_space = vector.tobytes(), space
                changed.append(sample)
            vectors[sample.pk] = vector
            if probs is not None:
                probs_by_pk[sample.pk] = probs[i]
        Sample.objects.bulk_update(changed, ["embedding", "embedding_space"], batch_size=500)
        done = min(len(todo), start + CHUNK)
        progress(5 + 80 * done / max(1, len(todo)), f"scored {done} of {len(todo)} samples")
    usable = [s for s in samples if s.pk in vectors]
    if not usable:
        return usable, np.zeros((0, 1), np.float32), None, None
    embeddings = np.stack([vectors[s.pk] for s in usable])
    probs = np.stack([probs_by_pk[s.pk] for s in usable]).astype(np.float32) if runner is not None else None
    return usable, embeddings, probs, None


def _pool_learned(project: Project, samples: list[Sample], runner, progress):
    """_pool_features for a learner's version: its uncertainty and embedding of every sample, in chunks (the
    embeddings are cached in the model's space). The full predictions are not kept (a point cloud's per-point
    labels are large): the chosen samples are predicted again for their pre-annotations (:func:`_pre_annotations`)."""
    space = f"model:{runner.model_id}"
    usable, E, P, U = [], [], [], []
    for start in range(0, len(samples), CHUNK):
        ok, predictions = samples_predict(project=project, samples=samples[start:start + CHUNK], runner=runner)
        if ok:
            usable += ok
            E.append(np.asarray(predictions.embedding, dtype=np.float32))
            U.append(np.asarray(predictions.uncertainty, dtype=np.float32))
            if "probs" in predictions.extra:
                P.append(np.asarray(predictions.extra["probs"], dtype=np.float32))
            for sample, vector in zip(ok, E[-1]):
                sample.embedding, sample.embedding_space = vector.tobytes(), space
            Sample.objects.bulk_update(ok, ["embedding", "embedding_space"], batch_size=500)
        done = min(len(samples), start + CHUNK)
        progress(5 + 80 * done / max(1, len(samples)), f"scored {done} of {len(samples)} samples")
    if not usable:
        return usable, np.zeros((0, 1), np.float32), None, None
    probs = np.concatenate(P) if len(P) and sum(len(p) for p in P) == len(usable) else None
    return usable, np.concatenate(E), probs, np.concatenate(U)


def _covered_embeddings(project: Project, samples: list[Sample], runner) -> np.ndarray:
    """Embeddings of labeled or queued samples in a learner version's space: cached ones as they are, the rest
    predicted (and cached)."""
    space = f"model:{runner.model_id}"
    cached = {s.pk: np.frombuffer(s.embedding, dtype=np.float32) for s in samples
              if s.embedding_space == space and s.embedding}
    todo = [s for s in samples if s.pk not in cached]
    _, E, _, _ = _pool_learned(project, todo, runner, lambda *_: None) if todo else ([], None, None, None)
    vectors = [cached[s.pk] for s in samples if s.pk in cached]
    parts = [np.stack(vectors)] if vectors else []
    if E is not None and len(E):
        parts.append(E)
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def _pre_annotations(project: Project, samples: list[Sample], runner) -> dict[int, dict]:
    """sample id → the learner version's prediction (the task's pre-annotation), for the chosen samples."""
    out = {}
    for start in range(0, len(samples), CHUNK):
        ok, predictions = samples_predict(project=project, samples=samples[start:start + CHUNK], runner=runner)
        results = learner_results(predictions, task_type=project.task_type) if predictions is not None else []
        for sample, result in zip(ok, results):
            out[sample.pk] = {**result, "model": runner.model_id}
    return out


def _pool_mc_probs(project: Project, samples: list[Sample], model, progress, *, random_state: int) -> np.ndarray:
    """MC-dropout probabilities ``(MC_SAMPLES, N, C)`` of the deployed model's torch network, for BALD.

    ONNX export drops dropout, so this runs the checkpoint; the samples are the ones _pool_features could read."""
    from ml.errors import MLError

    out = []
    for start in range(0, len(samples), CHUNK):
        chunk = samples[start:start + CHUNK]
        try:
            X, ok = load_batch(project.modality, [content_io.read_content(s) for s in chunk]), None
        except (content_io.ContentUnavailable, MLError):  # read a moment ago, gone or changed now: one by one
            arrays, ok = [], np.zeros(len(chunk), bool)
            for i, sample in enumerate(chunk):
                try:
                    arrays.append(load_batch(project.modality, [content_io.read_content(sample)]))
                    ok[i] = True
                except (content_io.ContentUnavailable, MLError):
                    pass
            X = np.concatenate(arrays) if arrays else None
        mc = model.predict_proba_mc(X, n_samples=MC_SAMPLES, random_state=random_state + start) if X is not None else None
        if ok is not None:  # the unreadable ones get identical passes: BALD scores them 0
            full = np.full((MC_SAMPLES, len(chunk), model.n_classes), 1.0 / model.n_classes, np.float32)
            if mc is not None:
                full[:, ok] = mc
            mc = full
        out.append(mc)
        done = start + len(chunk)
        progress(85 + 4 * done / len(samples), f"MC dropout: {MC_SAMPLES} passes over {done} of {len(samples)} samples")
    return np.concatenate(out, axis=1)


def round_run(*, rnd: Round, job: JobContext) -> None:
    """The round's job (claimed by the job runner): score the unlabeled pool, select under the budget, create
    tasks. The tasks and the round's success are written in one transaction, so a run that was killed or
    cancelled leaves no task behind and a rerun starts clean."""
    project = rnd.project
    progress = job.progress
    progress(0, "loading the pool")
    from ml.selection import MODEL_FREE_STRATEGIES, select

    deployment = current_deployment(project=project)
    runner = model_runner(model_version=deployment.model_version) if deployment else None
    candidates = list(Sample.objects.filter(project=project, label__isnull=True, task__isnull=True).order_by("id"))
    pool, embeddings, probs, learned = _pool_features(project, candidates, runner, progress)
    uncertainty = learned if learned is not None and probs is None else None
    available = {s: sum(1 for x in pool if x.split == s) for s in ("train", "val", "test")}
    alloc = _allocate(rnd.budget, project.split_ratios, available)
    index = project.label_index
    labeled = Sample.objects.filter(project=project, label__isnull=False, split="train").values_list("label", flat=True)
    counts = np.bincount([index[label] for label in labeled if label in index], minlength=len(project.labels))
    # What is labeled already (a bounded sample of it), so coverage-aware strategies look elsewhere.
    tasked = Sample.objects.filter(project=project, task__isnull=False)
    # near-duplicate exclusion compares with every labeled or queued sample; coverage needs only a sample
    if "exclude_near_duplicates" in (rnd.constraints or {}):
        covered = list(tasked.order_by("id"))
        progress(85, f"embedding {len(covered)} labeled or queued samples for the near-duplicate check")
    else:
        covered = list(tasked.order_by("?")[:LABELED_FOR_COVERAGE])
    if runner is not None and runner.is_learner:
        labeled_embeddings = _covered_embeddings(project, covered, runner)
    else:
        _, labeled_embeddings, _, _ = _pool_features(project, covered, runner, lambda *_: None)
    chosen: list[tuple[int, float, bool]] = []  # (pool position, score, preferred)
    used = {}
    constraints_report = None  # what the train split's constraints did
    for split in ("train", "val", "test"):
        if alloc[split] == 0:
            continue
        positions = np.array([i for i, s in enumerate(pool) if s.split == split])
        # Train gets the strategy; val/test stay random samples so evaluation is unbiased.
        strategy = rnd.strategy if split == "train" else "random"
        if strategy not in MODEL_FREE_STRATEGIES and probs is None and uncertainty is None:
            raise ValidationFailed(f"Strategy {strategy!r} needs a deployed model; before the first one use one of "
                                   f"{', '.join(MODEL_FREE_STRATEGIES)}.", code=ErrorCode.MODEL_REQUIRED)
        # low-confidence production samples and samples a lead sent back from a drift check go first
        prefer = np.array([pool[i].low_confidence or pool[i].drift_flagged for i in positions])
        extra, notes = {}, {}
        if split == "train" and rnd.constraints:
            extra, notes = _constraint_options(project, rnd.constraints, [pool[i] for i in positions],
                                               probs[positions] if probs is not None else None)
        if uncertainty is not None:
            extra["uncertainty"] = uncertainty[positions]
        if strategy == "bald":
            if runner.is_learner:
                raise ValidationFailed("Strategy 'bald' needs MC dropout, which only the built-in classification "
                                       "networks run; use 'auto' or an uncertainty strategy.",
                                       code=ErrorCode.MODEL_REQUIRED)
            model = model_checkpoint_load(model_version=deployment.model_version, device="auto")
            extra["mc_probs"] = _pool_mc_probs(project, [pool[i] for i in positions], model, progress,
                                               random_state=rnd.pk)
        selection = select(strategy, budget=alloc[split], embeddings=embeddings[positions], **extra,
                           probs=probs[positions] if probs is not None else None,
                           labeled_counts=counts, n_classes=len(project.labels),
                           labeled_embeddings=labeled_embeddings if len(covered) else None,
                           prefer=prefer if prefer.any() else None, random_state=rnd.pk)
        used[split] = selection.strategy
        if split == "train" and rnd.constraints:
            constraints_report = _constraints_report(project, rnd.constraints, selection.info, notes,
                                                     train_budget=alloc["train"])
        chosen += [(int(positions[i]), float(score), bool(prefer[i]))
                   for i, score in zip(selection.indices, selection.scores)]
    progress(90, f"creating {len(chosen)} tasks")
    pre = (_pre_annotations(project, [pool[c[0]] for c in chosen], runner)
           if runner is not None and runner.is_learner else {})
    now = timezone.now()
    # Queue order: preferred (low-confidence production) samples first, then by score rank.
    order = sorted(range(len(chosen)), key=lambda k: (not chosen[k][2], -chosen[k][1]))
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # one round writes tasks at a time
        taken = set(Task.objects.filter(sample_id__in=[pool[chosen[k][0]].pk for k in order])
                    .values_list("sample_id", flat=True))
        order = [k for k in order if pool[chosen[k][0]].pk not in taken]  # claimed by a concurrent round
        tasks = []
        for rank, k in enumerate(order):
            position, score, preferred = chosen[k]
            prediction = None
            if runner is not None and runner.is_learner:  # the task type's shape: the tool's pre-annotation
                prediction = pre.get(pool[position].pk)
            elif probs is not None:
                row = probs[position]
                top = int(row.argmax())
                prediction = {"label": project.labels[top], "confidence": float(row[top]), "model": runner.model_id}
            tasks.append(Task(project=project, sample=pool[position], round=rnd, rank=rank, score=score,
                              priority=(1.0 if preferred else 0.0) + 1.0 - rank / max(1, len(order)),
                              available_at=now, prediction=prediction))
        Task.objects.bulk_create(tasks, batch_size=1000)
        Round.objects.filter(pk=rnd.pk).update(
            selected=len(tasks), model_version=deployment.model_version if deployment else None,
            strategy_used=used.get("train") or next(iter(used.values()), rnd.strategy),
            details={"allocation": alloc, "strategies": used, "pool": available,
                     "preferred": int(sum(1 for c in chosen if c[2])),
                     "unreadable": len(candidates) - len(pool), "taken_by_other_rounds": len(taken),
                     **({"constraints": constraints_report or {"not_applied": (
                         "this round had no train picks to constrain (no unlabeled train samples, or the "
                         "budget's train share was 0)")}} if rnd.constraints else {})})
        job.succeed(f"selected {len(tasks)} samples")


# -- the task queue -------------------------------------------------------------------------------

def task_lease_next(*, project: Project, user) -> Task | None:
    """Lease the highest-priority open task to ``user``; None when nothing is open for them.

    A caller who already holds a live lease in the project gets that task back (a reload does not burn
    tasks). Claims are a compare-and-swap on ``available_at``, so no task is leased twice; PostgreSQL
    also skips rows another transaction is claiming (SELECT ... FOR UPDATE SKIP LOCKED).
    """
    now = timezone.now()
    expires = now + timedelta(seconds=settings.LOOPLAB["LEASE_SECONDS"])
    held = Task.objects.filter(project=project, state=TaskState.PENDING, leased_by=user, lease_expires_at__gt=now).first()
    if held is not None:
        return held
    for _ in range(10):
        with transaction.atomic():
            qs = (Task.objects.filter(project=project, state=TaskState.PENDING, available_at__lte=now)
                  .exclude(skips__user=user).order_by("-priority", "id"))
            if project.annotations_per_task > 1:  # each annotator annotates a task once (rejected ones may redo it)
                qs = qs.exclude(pk__in=Annotation.objects.filter(task__project=project, annotator=user)
                                .exclude(review_status=ReviewStatus.REJECTED).values("task_id"))
            if connection.vendor == "postgresql":
                return _claim_postgres(qs, user=user, now=now, expires=expires)
            candidate = qs.only("id").first()
            if candidate is None:
                return None
            claimed = Task.objects.filter(pk=candidate.pk, state=TaskState.PENDING, available_at__lte=now).update(
                leased_by=user, leased_at=now, lease_expires_at=expires, available_at=expires)
            if claimed:
                return Task.objects.select_related("sample").get(pk=candidate.pk)
    return None


def task_prediction_refresh(*, task: Task) -> Task:
    """Give a task that opens the deployed model's prediction when it has none from that model (tasks queued before
    it was deployed, or scored by an earlier one): the tool shows it as editable pre-annotations. The task type's
    shape (``{"boxes": [...]}`` etc.; classification ``{"label", "confidence"}``) plus ``model``. A sample that
    cannot be read or predicted keeps what it had."""
    from ml.errors import MLError

    deployment = current_deployment(project=task.project)
    if deployment is None or (task.prediction or {}).get("model") == deployment.model_version_id:
        return task
    try:
        runner = model_runner(model_version=deployment.model_version)
        content = content_io.read_content(task.sample)
        if runner.is_learner:
            result = learner_results(runner.predict([content]), task_type=task.project.task_type)[0]
            prediction = {**result, "model": runner.model_id}
        else:
            row = np.asarray(runner.predict_proba(load_batch(task.project.modality, [content]))[0], dtype=np.float64)
            top = int(row.argmax())
            prediction = {"label": runner.labels[top], "confidence": float(row[top]), "model": runner.model_id}
    except (content_io.ContentUnavailable, MLError) as exc:
        log.warning("task %s: no pre-annotation: %s", task.pk, exc)
        return task
    except Exception:  # a model that cannot load or run must never keep an annotator from the task
        log.exception("task %s: no pre-annotation: the deployed model %s failed", task.pk,
                      deployment.model_version_id)
        return task
    Task.objects.filter(pk=task.pk).update(prediction=prediction)
    task.prediction = prediction
    return task


def _claim_postgres(candidates, *, user, now, expires) -> Task | None:
    """One statement: UPDATE the first open candidate, chosen with FOR UPDATE SKIP LOCKED, RETURNING it.

    The hot path of every annotator (issue 2: p99 <= 50 ms with 100k open tasks): one round trip
    instead of BEGIN / SELECT ... FOR UPDATE / UPDATE / SELECT / COMMIT. Concurrent claimers skip the
    row being claimed, so no task is leased twice.
    """
    inner, params = candidates.values("id")[:1].query.sql_with_params()
    table = connection.ops.quote_name(Task._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET leased_by_id = %s, leased_at = %s, lease_expires_at = %s, available_at = %s "
            f"WHERE id = ({inner} FOR UPDATE SKIP LOCKED) AND available_at <= %s RETURNING id",
            [user.pk, now, expires, expires, *params, now])
        row = cursor.fetchone()
    return Task.objects.select_related("sample").get(pk=row[0]) if row else None


def _still_callers(task: Task, user, *, now) -> None:
    """Refuse (409) unless ``task`` is still the caller's to submit or skip.

    The task is the caller's while it is leased to them: a live lease, or an expired one that nobody else
    has claimed since. A lease is a reservation against other annotators, not a deadline for its holder:
    once it expires the task is open to others, but until someone claims it the holder's late work is
    still the only work on it and is kept. A claim by another annotator moves ``leased_by`` to them, so
    from then on the late submit is refused and nothing is stored:

    - ``task_done``: the task has all its annotations;
    - ``task_taken``: another annotator holds a live lease on it now (yours ran out and they claimed it,
      or you never held it);
    - ``not_leased``: nobody holds it now and it is not yours (you skipped it or submitted it, or the
      annotator who claimed it after you let their lease run out too).

    Call inside a transaction holding the task's row lock: claims are UPDATEs of that row, so none can
    slip in between this check and the caller's write.
    """
    if task.state != TaskState.PENDING:
        raise Conflict("This task is already done.", code=ErrorCode.TASK_DONE)
    if task.leased_by_id == user.pk:
        return
    if task.leased_by_id is not None and task.lease_expires_at is not None and task.lease_expires_at > now:
        raise Conflict("Another annotator holds this task now (a lease that runs out can be claimed by others); "
                       "nothing was stored. Take the next task with tasks/next.", code=ErrorCode.TASK_TAKEN)
    raise Conflict("You do not hold the lease on this task; claim it with tasks/next.", code=ErrorCode.NOT_LEASED)


def task_skip(*, task: Task, user) -> None:
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        _still_callers(task, user, now=timezone.now())
        TaskSkip.objects.get_or_create(task=task, user=user)
        Task.objects.filter(pk=task.pk).update(leased_by=None, leased_at=None, lease_expires_at=None,
                                               available_at=timezone.now())


def annotation_submit(*, task: Task, user, result, active_seconds: float | None = None) -> Annotation:
    """Store a validated annotation for a task that is still the caller's (see _still_callers: leased to
    them, live or expired and not claimed by anyone since; 409 ``task_taken`` once another annotator holds it).

    A task is done once it has the project's ``annotations_per_task`` counted (not rejected)
    annotations; for classification the sample's label is then set (see task_settle). When the task opened
    with the model's prediction, the annotation records how much of it was kept (:func:`preannotation_compare`).
    """
    project = task.project
    clean = validate_result(project=project, sample=task.sample, result=result)
    if active_seconds is not None and (active_seconds < 0 or active_seconds > 86400):
        raise ValidationFailed("active_seconds must be within 0..86400.", code=ErrorCode.INVALID_ACTIVE_SECONDS)
    with transaction.atomic():
        task = Task.objects.select_for_update().select_related("sample").get(pk=task.pk)
        now = timezone.now()
        _still_callers(task, user, now=now)
        annotation = Annotation.objects.create(
            task=task, sample=task.sample, annotator=user, result=clean, active_seconds=active_seconds,
            lease_to_submit_s=(now - task.leased_at).total_seconds() if task.leased_at else None,
            preannotation=preannotation_compare(task_type=project.task_type, prediction=task.prediction, result=clean))
        task_settle(task=task, now=now, release=True)
    return annotation


def preannotation_compare(*, task_type: str, prediction: dict | None, result: dict) -> dict | None:
    """How much of a task's prediction (its pre-annotation) a result kept: ml.preannotation's counts plus the
    prediction's ``model``; None without a prediction, or for one the comparison cannot read (logged)."""
    from ml.errors import InvalidInput
    from ml.preannotation import compare_preannotation

    if not isinstance(prediction, dict):
        return None
    try:
        counts = compare_preannotation(task_type, prediction, result).as_dict()
    except (InvalidInput, KeyError, TypeError, ValueError) as exc:
        log.warning("pre-annotation not compared (%s): %s", task_type, exc)
        return None
    return {"model": prediction.get("model"), **counts}


def task_settle(*, task: Task, now=None, release: bool = False) -> None:
    """Task state (and, for classification, the sample's label) from its counted annotations.

    Counted: every annotation not rejected in review. With ``annotations_per_task`` of them the task is
    done; the label is the latest lead correction if there is one, else the majority of the counted
    labels (ties: the earliest). With fewer, the task is open again (a lease held on it is kept) and
    the sample has no label; ``release`` ends the caller's lease. Call inside a transaction holding the task's row lock.
    """
    now = now or timezone.now()
    project = task.project
    counted = list(Annotation.objects.filter(task=task).exclude(review_status=ReviewStatus.REJECTED).order_by("id"))
    if len(counted) >= project.annotations_per_task:
        Task.objects.filter(pk=task.pk).update(state=TaskState.DONE, done_at=task.done_at if task.state == TaskState.DONE else now,
                                               leased_by=None, lease_expires_at=None, available_at=now)
        if project.task_type == "classification":
            corrections = [a for a in counted if a.review_status == ReviewStatus.CORRECTED and a.corrected_result]
            if corrections:
                label = max(corrections, key=lambda a: (a.reviewed_at or now, a.pk)).corrected_result["label"]
            else:
                votes = [a.final_result["label"] for a in counted]
                label = max(votes, key=lambda v: (votes.count(v), -votes.index(v)))
            Sample.objects.filter(pk=task.sample_id).update(label=label, labeled_at=now, low_confidence=False)
        return
    if release or task.state == TaskState.DONE:  # the submitter's lease ends, or review reopened the task
        Task.objects.filter(pk=task.pk).update(state=TaskState.PENDING, done_at=None, leased_by=None, leased_at=None,
                                               lease_expires_at=None, available_at=now)
    if project.task_type == "classification" and task.state == TaskState.DONE:
        Sample.objects.filter(pk=task.sample_id).update(label=None, labeled_at=None)
