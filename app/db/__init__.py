"""Persistence: the SQLite database is the source of truth for identities and embeddings."""
