import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.looplab.settings")
_django = get_wsgi_application()

from apps.core.uploads import limit_request_body  # noqa: E402 - needs the settings configured above

# chunked request bodies are counted against LOOPLAB_MAX_REQUEST_BYTES while they are read
application = limit_request_body(_django)
