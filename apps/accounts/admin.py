from django.contrib import admin

from apps.accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens can be seen (never their keys) and deleted, which revokes them; they are created with
    ``manage.py create_api_token``, the one place a key is shown."""

    list_display = ("prefix", "user", "created_at", "expires_at", "last_used_at")
    list_filter = ("expires_at",)
    search_fields = ("prefix", "user__username")
    fields = ("prefix", "user", "created_at", "expires_at", "last_used_at")
    readonly_fields = ("prefix", "user", "created_at", "last_used_at")

    def has_add_permission(self, request):
        return False
