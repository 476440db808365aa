"""Intake: where mail enters. Every source ends in the durable spool before anything else runs.

``smtp`` (the SMTP listener), ``imap`` (mailbox pollers, with ``imap_client`` and the
watermark/lease state in ``imap_state``), ``files`` (``postdesk ingest``), all writing through
``spool`` (write, fsync, rename). Imports: configuration and the database layer only; never the
pipeline steps, agents or outbound mail.
"""
