"""postdesk's plugin API: ``from postdesk.plugins import hookimpl`` and implement the hooks of
:mod:`postdesk.plugins.hookspecs`. The host (:mod:`postdesk.plugins.host`) loads plugins from
``[plugins] enabled`` and from the entry-point group ``postdesk``; see docs/plugins.md.
"""

import pluggy

PROJECT = "postdesk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]
