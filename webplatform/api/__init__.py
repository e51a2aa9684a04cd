"""REST API v1: thin views over services and selectors, one error handler."""
