"""The app's training processes die with the app, even when it is killed with SIGKILL: no training outlives it
to write a model nobody owns.

    app (main thread) --spawns--> fork server --forks--> training child
The fork server is started by the app's main thread and asks the kernel for SIGKILL when that thread ends
(prctl PR_SET_PDEATHSIG, Linux; space/fork_server_preload.py arms it as the server's first import). Each training
child asks the same of the fork server, and also watches the app's pid from a thread: what the kernel's signal
misses (the fork server restarted from another thread, a platform without prctl), the watch catches within a
second. multiprocessing's resource tracker ends by itself once every process holding its pipe is gone.
"""

import ctypes
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time

import psutil

logger = logging.getLogger("minigpt.app")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_SECONDS = 0.5
FORK_SERVER_PRELOAD = ["space.fork_server_preload", "minigpt.training", "space.training_process"]


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when the thread that started it ends (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def exit_when_gone(pid: int) -> None:
    """A daemon thread that kills this process as soon as process `pid` (the app) is gone."""
    def watch():
        while alive(pid):
            time.sleep(WATCH_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up: the app that would use the result is gone

    threading.Thread(target=watch, name="minigpt-lifeline", daemon=True).start()


def training_context():
    """The multiprocessing context for training children. From the main thread on Linux: a fork server started
    now (torch and transformers imported once, a clean process per run) that dies with this thread. Elsewhere:
    spawn, whose child is the runner thread's own (it lives as long as the child does)."""
    main_thread = threading.current_thread() is threading.main_thread()
    if "forkserver" not in multiprocessing.get_all_start_methods() or not main_thread:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return context
