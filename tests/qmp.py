#!/usr/bin/env python3
"""qmp.py - a small QMP client for pullback's tests (Python standard library only).

usage:
  qmp.py SOCKET COMMAND [JSON-ARGUMENTS]   run one QMP command; print its "return" as JSON
  qmp.py SOCKET --hmp 'TEXT'               run one human-monitor command; print its text
  qmp.py SOCKET --wait-jobs [SECONDS]      wait until query-block-jobs is empty

Every call opens its own connection: QEMU started with
-qmp unix:PATH,server=on,wait=off serves one client at a time, so connections
are short.  Asynchronous events are ignored (printed on stderr when
QMP_EVENTS is set).  Exit status: 0 on success, 1 when QEMU answered with an
error (printed on stderr; for --hmp also when the text reports an error),
2 on usage errors, 3 when QEMU could not be reached or did not answer in time
(QMP_TIMEOUT seconds, default 30).
"""
import json
import os
import socket
import sys
import time


class QMPError(Exception):
    pass


class Monitor:
    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError("not a QMP greeting: %r" % greeting)
        self.execute("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise QMPError("QEMU closed the monitor connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command, arguments=None):
        """Send COMMAND; return the whole reply ({"return": ...} or {"error": ...})."""
        msg = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                if os.environ.get("QMP_EVENTS"):
                    print("QMP event:", json.dumps(reply), file=sys.stderr)
                continue
            return reply

    def close(self):
        self.sock.close()


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, command = argv[1], argv[2]
    timeout = float(os.environ.get("QMP_TIMEOUT", "30"))
    try:
        mon = Monitor(path, timeout)
        if command == "--hmp":
            if len(argv) != 4:
                print("qmp.py: --hmp needs one argument", file=sys.stderr)
                return 2
            reply = mon.execute("human-monitor-command", {"command-line": argv[3]})
        elif command == "--wait-jobs":
            limit = float(argv[3]) if len(argv) > 3 else 30.0
            deadline = time.monotonic() + limit
            while True:
                reply = mon.execute("query-block-jobs")
                if "error" in reply or reply["return"] == []:
                    break
                if time.monotonic() > deadline:
                    print("qmp.py: block jobs still running after %gs: %s"
                          % (limit, json.dumps(reply["return"])), file=sys.stderr)
                    return 1
                time.sleep(0.1)
        else:
            args = json.loads(argv[3]) if len(argv) > 3 else None
            reply = mon.execute(command, args)
        mon.close()
    except (OSError, QMPError, ValueError) as e:
        print("qmp.py: %s: %s" % (path, e), file=sys.stderr)
        return 3

    if "error" in reply:
        print("qmp.py: %s failed: %s" % (command, json.dumps(reply["error"])), file=sys.stderr)
        return 1
    if command == "--wait-jobs":
        return 0
    ret = reply["return"]
    if isinstance(ret, str):
        sys.stdout.write(ret)
        # HMP reports its errors as text inside a successful reply.
        if command == "--hmp" and ("Error" in ret or "failed" in ret):
            return 1
    else:
        print(json.dumps(ret))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
