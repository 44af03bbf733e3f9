"""Progress bars show on a terminal only: never in a pipe, a log file or CI."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

DRAW = "from medran.progress import bar\nfor _ in bar(range(5), desc='converting'): pass"


def stderr_of(terminal: bool, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "CI"} | env
    if not terminal:
        done = subprocess.run([sys.executable, "-c", DRAW], env=environment, capture_output=True)
        return done.stderr.decode()
    leader, follower = pty.openpty()
    # A terminal's size: a fresh pty has 0 columns, where tqdm draws nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-c", DRAW], env=environment, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    process.wait()
    os.close(leader)
    return out.decode(errors="replace")


@pytest.mark.parametrize(
    ("terminal", "env", "drawn"),
    [(True, {}, True), (False, {}, False), (True, {"CI": "true"}, False)],
)
def test_bars_are_drawn_on_an_interactive_terminal_outside_ci(
    terminal: bool, env: dict[str, str], drawn: bool
) -> None:
    assert ("converting" in stderr_of(terminal, **env)) == drawn
