"""A child process whose merged stdout and stderr are read by a thread, so
the pipe never fills and a test can wait for lines or show the output when
it fails.
"""

import subprocess
import threading


class CapturedProcess:
    """Start `args` with `environment` and collect its output lines."""

    def __init__(self, args, environment, reader_name=None):
        self.args = args
        self.lines = []
        self._eof = False
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._drain, name=reader_name, daemon=True)
        self._reader.start()

    def _drain(self):
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def output(self):
        """Return the process's output so far."""
        with self._changed:
            return "\n".join(self.lines)

    def send_signal(self, signum):
        """Send `signum` if the process is still running."""
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self, timeout):
        """Kill the process and wait up to `timeout` seconds for it and for
        the output reader.
        """
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
