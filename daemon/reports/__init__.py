"""Reports: figures about volume, speed, satisfaction, backlog and spam, computed in the database.

One module per section (``volume``, ``speed``, ``satisfaction``, ``backlog``, ``hygiene``), each
with ``compute(conn, window) -> dict``; ``build.SECTIONS`` lists them, so a further section (the
SLA compliance of the SLA issue) is one more module. ``text``, ``html`` and ``mail`` present a
built report; ``commands`` is the ``postdesk report`` command and ``schedule`` the weekly mail.
"""
