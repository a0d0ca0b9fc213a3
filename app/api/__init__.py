"""HTTP layer: routes, schemas, dependencies and the error handlers. Only this package knows HTTP."""
