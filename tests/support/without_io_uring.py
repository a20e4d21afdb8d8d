#!/usr/bin/python3
"""Runs a command with system calls refused by a seccomp filter (EPERM), the way Docker's and
Kubernetes' default profiles refuse io_uring. Debian's python3-seccomp.

Usage: without_io_uring.py [--refuse SYSCALL,...] -- COMMAND [ARGS...]
(default: io_uring_setup, io_uring_enter and io_uring_register)
"""
import argparse
import errno
import os

import seccomp

ap = argparse.ArgumentParser()
ap.add_argument("--refuse", default="io_uring_setup,io_uring_enter,io_uring_register")
ap.add_argument("command", nargs="+")
args = ap.parse_args()
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
for name in args.refuse.split(","):
    f.add_rule(seccomp.ERRNO(errno.EPERM), name)
f.load()
os.execvp(args.command[0], args.command)
