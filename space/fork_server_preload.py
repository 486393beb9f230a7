"""The fork server's first import (space.lifeline.FORK_SERVER_PRELOAD), and nobody else's: from here on the
kernel kills the fork server when the app's main thread, which started it, ends."""

from space.lifeline import die_with_parent

die_with_parent()
