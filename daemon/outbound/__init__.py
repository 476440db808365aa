"""Outbound: every mail postdesk sends, from template to relay.

``templating`` renders Jinja2 templates with the context from ``context``; ``compose`` builds
the message; ``outbox`` writes it as a row in the message's transaction; ``sender`` delivers
the rows to the relay or the Maildir. Never imports intake or the pipeline steps.
"""
