"""Agents: who may act on tickets by mail, and what their commands do.

``authresults`` and ``tokens`` decide whether mail from an agent's address really is that
agent's; ``commands`` parses the ``#command`` lines; ``actions`` carries them out, with
``assignment`` and ``merge``. Used by the pipeline steps; imports the store and outbound mail.
"""
