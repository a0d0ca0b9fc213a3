"""Service logic: no HTTP here; domain errors are raised and mapped to responses by the API layer."""
