"""Store: the database and the files beside it.

``db`` (engines, sessions, migrations, counters), ``attachments`` (blobs on disk by sha256),
``quarantine`` (held messages with reason and raw bytes), ``views`` (the JSON shapes of
tickets and messages) and ``tags`` (the subject tag). Imports the models and the spool only.
"""
