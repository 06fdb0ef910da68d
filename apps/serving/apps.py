from django.apps import AppConfig

from apps.registry.signals import predictions_made


class ServingConfig(AppConfig):
    name = "apps.serving"
    label = "serving"

    def ready(self):
        from apps.serving import receivers  # its services import models: only once the registry is ready

        # every prediction of the deployed model is logged, whoever asked for it (predict API, predict-on-push)
        predictions_made.connect(receivers.predictions_log, dispatch_uid="serving.predictions_log")
