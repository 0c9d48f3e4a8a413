"""The HTTP edge: middlewares, JSON helpers and the REST routes. Thin: parse, call a service, render."""
