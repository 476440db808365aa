"""The plugins process: plugin hooks run here, beside the workers, never inside one.

``serve`` starts it (supervised and restarted like a worker, see ``WorkerProcess``) when a
plugin looks contacts or orders up, hears events or has a long-running job. It answers the
lookups the workers ask (``PluginRunner.start_answering``), fires the events the workers
journal in serve's name (``EventJournal.fire_journaled``) and runs the plugins' jobs, such as
the webhook deliveries (``PluginRunner.start_jobs``).
So a slow shop or a busy plugin costs the workers no CPU, and a plugin that crashes its process
takes down neither a worker nor the SMTP front: serve restarts this process, which fires the
events still waiting again with the same ``event_id`` (R-17).
"""

from __future__ import annotations

import logging
import os
import signal

from postdesk.daemon.config import Settings
from postdesk.daemon.ops.logs import LOG_FORMAT, use_log_format
from postdesk.daemon.runtime import build_runtime, limit_malloc_arenas, settle_heap
from postdesk.daemon.workerproc import PLUGIN_DRAIN_SECONDS, WorkerChannel, die_with_parent
from postdesk.plugins.journal import EVENT_HOOKS
from postdesk.plugins.runner import LOOKUP_HOOKS, PluginRunner

NAME = "plugins"


def wanted(plugins: PluginRunner) -> bool:
    """True when some plugin looks things up, hears events or has a long-running job: the
    plugins process has work."""
    return plugins.implemented(*LOOKUP_HOOKS, *EVENT_HOOKS) or plugins.has_jobs()


def run_plugins(
    settings: Settings, secret: bytes, channel: WorkerChannel, parent: int, log_level: int
) -> None:
    """Entry point of the plugins process: answer lookups, fire events and run the plugins'
    jobs until told to stop."""
    limit_malloc_arenas()  # before the plugins' threads start
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    use_log_format(settings.log.format)
    runtime = build_runtime(settings, secret)
    settle_heap()
    plugins = runtime.services.plugins
    plugins.journal.fire_elsewhere(parent)  # the events are in serve's name
    stop_answering = plugins.start_answering()  # the lookups the workers ask
    agents = [agent.email for agent in settings.agents]
    stop_prefetching = plugins.start_prefetching(runtime.spool.new, agents)  # and will ask
    stop_firing = plugins.start_firing(runtime.factory)
    stop_jobs = plugins.start_jobs()
    while not channel.stopping.value and os.getppid() == parent:
        channel.sleep(1.0)
    stop_prefetching()
    stop_answering()
    stop_firing()  # and the events of the workers' last messages
    stop_jobs()
    plugins.drain(PLUGIN_DRAIN_SECONDS)
    plugins.journal.sweep(runtime.factory, force=True)  # forget the answered ones
    plugins.close()
    runtime.engine.dispose()
