"""The HTTP transport under the API service: the accepting server with its thread pool
and the per-connection request handler. Nothing here knows a route."""
