"""The snapshot race of tests/system/files.sh, run as the submitter.

    python3 race.py SOCKET WORKSPACE IMAGE COUNT

Swaps WORKSPACE/d between a directory and the link WORKSPACE/d.link, and
WORKSPACE/f between a file and the link WORKSPACE/f.link, in a tight loop in
a second process, while it submits COUNT jobs with that workspace over one
connection to the agent's socket. Prints one JSON object: the IDs of the jobs
submitted and the error messages of the submits refused. Standard library
only: it runs with the system's python3.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sys


def race(ws: str, stop) -> None:
    def swap(a: str, b: str) -> None:
        os.rename(os.path.join(ws, a), os.path.join(ws, b))

    while not stop.is_set():
        swap("d", "d.real"), swap("d.link", "d"), swap("f", "f.real"), swap("f.link", "f")
        swap("d", "d.link"), swap("d.real", "d"), swap("f", "f.link"), swap("f.real", "f")


def main() -> None:
    path, ws, image, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    stop = multiprocessing.Event()
    racer = multiprocessing.Process(target=race, args=(ws, stop))
    racer.start()
    taken, refused = [], []
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(path)
            replies = conn.makefile("rb")
            for n in range(count):
                spec = {"image": image, "command": ["true"], "workspace": ws}
                request = {
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "job.submit",
                    "params": {"spec": spec},
                }
                conn.sendall(json.dumps(request).encode() + b"\n")
                reply = json.loads(replies.readline())
                if "result" in reply:
                    taken.append(reply["result"]["id"])
                else:
                    refused.append(reply["error"].get("data") or reply["error"]["message"])
    finally:
        stop.set()
        racer.join(30)
    print(json.dumps({"taken": taken, "refused": refused, "racer": racer.exitcode}))


if __name__ == "__main__":
    main()
