"""The status HTTP API: the service (routing, validation, auth, metrics, OpenAPI) above a
small stdlib HTTP transport."""
