from django.urls import path

from apps.exports import api as exports
from apps.labeling import api as labeling
from apps.labeling import crops_api, quality_api, review_api
from apps.monitoring import api as monitoring
from apps.monitoring import project_api
from apps.projects import api as projects
from apps.samples import api as samples
from apps.samples import peaks_api, points_api
from apps.serving import api as serving
from apps.training import api as training

urlpatterns = [
    path("projects/", project_api.ProjectListCreate.as_view()),
    path("projects/<int:project_id>/", project_api.ProjectDetail.as_view()),
    path("projects/<int:project_id>/members/", projects.ProjectMembers.as_view()),
    path("projects/<int:project_id>/members/<str:username>/", projects.ProjectMember.as_view()),
    path("projects/<int:project_id>/drift-webhook-secret/rotate/", monitoring.ProjectWebhookSecretRotate.as_view()),
    path("projects/<int:project_id>/samples/", samples.SampleListPush.as_view()),
    path("projects/<int:project_id>/label-issues/", quality_api.LabelIssues.as_view()),
    path("projects/<int:project_id>/crops/", crops_api.CropsSend.as_view()),
    path("projects/<int:project_id>/label-checks/", quality_api.LabelCheckListCreate.as_view()),
    path("label-checks/<int:check_id>/", quality_api.LabelCheckDetail.as_view()),
    path("label-checks/<int:check_id>/cancel/", quality_api.LabelCheckCancel.as_view()),
    path("samples/<int:sample_id>/", samples.SampleDetail.as_view()),
    path("samples/<int:sample_id>/content/", samples.SampleContent.as_view()),
    path("samples/<int:sample_id>/similar/", samples.SampleSimilar.as_view()),
    path("samples/<int:sample_id>/points.bin", points_api.SamplePoints.as_view()),
    path("samples/<int:sample_id>/peaks/", peaks_api.SamplePeaks.as_view()),
    path("samples/<int:sample_id>/spectrogram.png", peaks_api.SampleSpectrogram.as_view()),
    path("projects/<int:project_id>/rounds/", labeling.RoundListCreate.as_view()),
    path("rounds/<int:round_id>/", labeling.RoundDetail.as_view()),
    path("rounds/<int:round_id>/cancel/", labeling.RoundCancel.as_view()),
    path("projects/<int:project_id>/tasks/next/", labeling.TaskNext.as_view()),
    path("tasks/<int:task_id>/skip/", labeling.TaskSkip.as_view()),
    path("tasks/<int:task_id>/annotations/", labeling.AnnotationCreate.as_view()),
    path("projects/<int:project_id>/training-runs/", training.TrainingRunListCreate.as_view()),
    path("projects/<int:project_id>/learners/", training.LearnerList.as_view()),
    path("training-runs/<int:run_id>/", training.TrainingRunDetail.as_view()),
    path("training-runs/<int:run_id>/cancel/", training.TrainingRunCancel.as_view()),
    path("projects/<int:project_id>/models/", training.ModelList.as_view()),
    path("projects/<int:project_id>/models/upload/", training.ModelUpload.as_view()),
    path("models/<int:model_id>/", training.ModelDetail.as_view()),
    path("models/<int:model_id>/confusion.png", training.ModelConfusion.as_view()),
    path("projects/<int:project_id>/deployments/", serving.Deployments.as_view()),
    path("projects/<int:project_id>/predict/", serving.Predict.as_view()),
    path("projects/<int:project_id>/drift-checks/", monitoring.DriftCheckListCreate.as_view()),
    path("drift-checks/<int:check_id>/", monitoring.DriftCheckDetail.as_view()),
    path("drift-checks/<int:check_id>/cancel/", monitoring.DriftCheckCancel.as_view()),
    path("drift-checks/<int:check_id>/flag/", monitoring.DriftCheckFlag.as_view()),
    path("projects/<int:project_id>/annotations/", review_api.AnnotationList.as_view()),
    path("annotations/<int:annotation_id>/review/", review_api.AnnotationReview.as_view()),
    path("projects/<int:project_id>/agreement/", review_api.Agreement.as_view()),
    path("projects/<int:project_id>/exports/", exports.ExportListCreate.as_view()),
    path("exports/<int:export_id>/", exports.ExportDetail.as_view()),
    path("exports/<int:export_id>/cancel/", exports.ExportCancel.as_view()),
    path("exports/<int:export_id>/download", exports.ExportDownload.as_view()),
]
