"""The schema version this vmctl reads and writes (light: no SQLAlchemy import)."""

SCHEMA_VERSION = 3
