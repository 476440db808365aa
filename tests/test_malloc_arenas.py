"""limit_malloc_arenas: serve's processes spread their threads over two glibc heaps at most."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="arenas are glibc malloc's",
)

# Eight threads allocate at once; glibc's malloc_stats() then prints one "Arena N:" block per
# heap to standard error.
THREADS = textwrap.dedent(
    """
    import ctypes, sys, threading
    from postdesk.daemon.runtime import limit_malloc_arenas

    print(limit_malloc_arenas() if sys.argv[1] == "limit" else "none", flush=True)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    together = threading.Barrier(8)

    def allocate():
        blocks = [libc.malloc(4096) for _ in range(64)]
        together.wait()  # all eight hold their blocks at the same time
        for block in blocks:
            libc.free(block)

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc.malloc_stats()
    """
)


def arenas(mode: str, environ: dict[str, str] | None = None) -> tuple[str, int]:
    """What limit_malloc_arenas returned (or "none") and the heaps malloc_stats counted."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | (environ or {})
    done = subprocess.run(
        [sys.executable, "-c", THREADS, mode], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    counted = sum(line.startswith("Arena ") for line in done.stderr.splitlines())
    return done.stdout.strip(), counted


def test_threads_share_two_heaps_once_limited_and_many_otherwise() -> None:
    assert arenas("limit") == ("True", 2)
    _, unlimited = arenas("none")
    assert unlimited > 2  # what the limit saves: a heap for about every thread


def test_a_limit_in_the_environment_is_left_to_rule() -> None:
    assert arenas("limit", {"MALLOC_ARENA_MAX": "3"}) == ("False", 3)
