"""The annotator page has a tool for every project that can exist: each modality of the registry
(ml.modalities) with each task type the API accepts for it."""
from apps.projects.models import TaskType
from apps.web.views import ANNOTATION_TOOLS
from ml import modalities


def test_every_modality_and_task_type_has_an_annotation_tool(api, client, lead):
    allowed = []
    for modality in modalities.all_modalities():
        for task_type in TaskType.values:
            r = api(lead).post("/api/v1/projects/", {"name": f"{modality.name} {task_type}", "modality": modality.name,
                                                     "task_type": task_type, "labels": ["a", "b"]}, format="json")
            if r.status_code == 201:
                allowed.append((modality.name, task_type, r.json()["id"]))
    assert {m for m, _, _ in allowed} == set(modalities.MODALITIES)
    client.force_login(lead)
    for modality, task_type, project_id in allowed:
        assert (modality, task_type) in ANNOTATION_TOOLS, (modality, task_type)
        r = client.get(f"/projects/{project_id}/annotate/")
        assert r.status_code == 200
        assert r.templates[0].name == ANNOTATION_TOOLS[modality, task_type][0], (modality, task_type)
        assert r.context["supported"] is True
