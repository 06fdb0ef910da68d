"""The OpenAPI description of the token scheme (drf-spectacular), under the name it had before: tokenAuth."""
from drf_spectacular.authentication import TokenScheme


class ApiTokenScheme(TokenScheme):
    target_class = "apps.accounts.authentication.ApiTokenAuthentication"
    priority = 0
