"""REST API handlers, one module per resource."""
