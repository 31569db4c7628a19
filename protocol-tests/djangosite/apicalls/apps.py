from django.apps import AppConfig


class ApicallsConfig(AppConfig):
    name = "apicalls"

    def ready(self):
        from . import signals  # noqa: F401 - connects the invalidation handlers
