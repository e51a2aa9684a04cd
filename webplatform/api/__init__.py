"""REST API v1: thin views over services and selectors, one error handler."""

from . import schema  # noqa: F401  (registers the OpenAPI naming of nested Input/Output serializers)
