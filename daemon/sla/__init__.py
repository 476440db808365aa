"""Service levels: business calendars, policies, the two clocks of a ticket, and escalation.

``calendar`` does arithmetic in working time; ``rules`` reads ``[sla]`` into calendars and
policies; ``clock`` keeps each ticket's due times (the ``sla`` pipeline step calls it);
``escalation`` is the scheduler that sends warnings and breach alerts; ``digest`` mails each
agent a daily list of their open tickets. See ``docs/sla.md``.
"""
