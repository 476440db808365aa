"""Operations: backup and restore, health and metrics, TLS for intake, JSON logs, erasure.

A stage package: it may use ``config``, ``store``, ``intake.spool`` and the models, never the
pipeline's steps or the runners above it.
"""
