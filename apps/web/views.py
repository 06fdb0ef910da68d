"""Server-rendered pages. Reads go through selectors; every write goes through the public API v1
(the pages' ES modules call it with the session cookie and the CSRF token)."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from apps.labeling.review import review_summary
from apps.projects.models import Project
from apps.projects.selectors import project_role
from apps.web.selectors import can_lead, project_page_data, project_rows_for_user

# The annotator page's tool per (modality, task type): the templates to try, in order (each with its ES module).
# Template names are the web's to know, so this table lives here rather than in the modality registry
# (ml.modalities, which knows no Django); tests/apps/web checks that it covers every registered modality with
# each task type a project of it may have.
ANNOTATION_TOOLS: dict[tuple[str, str], tuple[str, ...]] = {
    ("image", "classification"): ("web/annotate.html",),
    ("image", "detection"): ("web/tools/image.html",),
    ("audio", "classification"): ("web/tools/audio.html", "web/annotate.html"),
    ("audio", "audio_regions"): ("web/tools/audio.html",),
    ("pointcloud", "classification"): ("web/tools/pointcloud.html",),
    ("pointcloud", "point_segmentation"): ("web/tools/pointcloud.html",),
    ("pointcloud", "cuboids"): ("web/tools/pointcloud.html",),
}


def _tool_template(project) -> str | None:
    from django.template import TemplateDoesNotExist
    from django.template.loader import select_template

    names = ANNOTATION_TOOLS.get((project.modality, project.task_type))
    if names is None:
        return None
    try:
        return select_template(list(names)).template.name
    except TemplateDoesNotExist:
        return None


def _not_found(request):
    # An HTML 404 rendered here: the project-wide handler404 answers JSON (it is the API's).
    return render(request, "web/404.html", status=404)


def _member_project(request, project_id: int):
    """(project, role) for a member; (None, None) for everyone else, who must not learn it exists."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None, None
    role = project_role(project=project, user=request.user)
    if role is None:
        return None, None
    return project, role


@login_required
def projects_list(request):
    return render(request, "web/projects.html", {"rows": project_rows_for_user(user=request.user)})


@login_required
@ensure_csrf_cookie
def project_detail(request, project_id: int):
    project, _ = _member_project(request, project_id)
    if project is None:
        return _not_found(request)
    return render(request, "web/project.html", project_page_data(project=project, user=request.user))


@login_required
@ensure_csrf_cookie
def annotate(request, project_id: int):
    project, role = _member_project(request, project_id)
    if project is None:
        return _not_found(request)
    template = _tool_template(project)
    return render(request, template or "web/annotate.html", {
        "project": project,
        "role": role,
        "is_lead": can_lead(role),
        "supported": template is not None,
        "config": {"project": project.pk, "labels": list(project.labels), "modality": project.modality,
                   "taskType": project.task_type},
    })


@login_required
@ensure_csrf_cookie
def review(request, project_id: int):
    """The lead's review page: annotations to accept / reject / correct, and agreement (data via the API)."""
    project, role = _member_project(request, project_id)
    if project is None:
        return _not_found(request)

    return render(request, "web/review.html", {
        "project": project, "role": role, "is_lead": can_lead(role),
        "summary": review_summary(project=project) if can_lead(role) else {},
        "config": {"project": project.pk, "labels": list(project.labels), "modality": project.modality,
                   "taskType": project.task_type, "annotationsPerTask": project.annotations_per_task},
    }, status=200 if can_lead(role) else 403)
