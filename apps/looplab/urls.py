from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("api/v1/", include("apps.looplab.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    path("", include("apps.web.urls")),
]

handler404 = "apps.core.exceptions.json_404"
handler500 = "apps.core.exceptions.json_500"
handler400 = "apps.core.exceptions.json_400"
