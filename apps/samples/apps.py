from django.apps import AppConfig


class SamplesConfig(AppConfig):
    name = "apps.samples"
    label = "samples"
