#!/usr/bin/env python3
"""Run a command on a pseudo-terminal that is its controlling terminal, as a
person at a terminal would, and answer its prompts.

    tty-drive.py TRANSCRIPT PROMPT=ANSWER [PROMPT=ANSWER ...] -- CMD ARGS...

Each PROMPT (a text the command writes) is awaited in turn, within 30 s, and
then ANSWER and a newline are typed. Everything the terminal shows is written
to TRANSCRIPT. Exits with the command's exit status; 90 if a prompt never
came (the transcript says what came instead). Used by
tests/suite-passphrase-tty.sh: the passphrase prompt reads /dev/tty, which
only a real controlling terminal provides.
"""
import os
import pty
import select
import sys
import time


def main():
    args = sys.argv[1:]
    sep = args.index("--")
    transcript, pairs, cmd = args[0], args[1:sep], args[sep + 1:]
    steps = [p.split("=", 1) for p in pairs]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    seen = b""
    pos = 0
    missed = None
    for prompt, answer in steps:
        deadline = time.time() + 30
        while seen.find(prompt.encode(), pos) < 0:
            left = deadline - time.time()
            r = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            if not r:
                missed = prompt
                break
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                missed = prompt
                break
            seen += data
        if missed:
            break
        pos = seen.find(prompt.encode(), pos) + len(prompt)
        os.write(fd, answer.encode() + b"\n")
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
    _, status = os.waitpid(pid, 0)
    with open(transcript, "wb") as f:
        f.write(seen)
    if missed:
        sys.stderr.write(f"tty-drive: the prompt {missed!r} never came\n")
        sys.exit(90)
    sys.exit(os.waitstatus_to_exitcode(status))


main()
