"""The sandboxed child's first code: trusted, run with `python -I -S -c <this file's text>`, standard library only.

It imports nothing of open_grpo (under bwrap the package is not even visible). From stdin it reads one header (a
decimal byte count, a newline, then that many bytes of JSON: code, files, nonce, limits, seccomp filter, report fd);
the rest of stdin is the program's. Then, in this order: write the files into the working directory, set the
resource limits as hard limits, install the seccomp filter, say "ready" on the report fd, run the code as
`__main__`, and only if it ran to its end, write the nonce on the report fd. `os._exit`, `sys.exit`, an exception
or a signal all skip that last write, so the parent never mistakes an early exit for a finished run.
"""

import base64
import builtins
import json
import math
import os
import resource
import sys
import traceback
import types

SETUP_FAILED = 125
RLIMITS = {  # header key -> (resource, scale to the kernel's unit)
    "cpu_s": (resource.RLIMIT_CPU, 1),
    "memory_mb": (resource.RLIMIT_AS, 1 << 20),
    "file_size_mb": (resource.RLIMIT_FSIZE, 1 << 20),
    "processes": (resource.RLIMIT_NPROC, 1),
    "open_files": (resource.RLIMIT_NOFILE, 1),
}


def read_header() -> dict:
    size = b""
    while not size.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte or len(size) > 20:
            raise ValueError("no header on stdin")
        size += byte
    remaining, chunks = int(size), []
    while remaining:
        chunk = os.read(0, min(remaining, 1 << 20))
        if not chunk:
            raise ValueError("header cut short")
        chunks.append(chunk)
        remaining -= len(chunk)
    return json.loads(b"".join(chunks))


def set_limits(limits: dict) -> None:
    for key, (which, scale) in RLIMITS.items():
        value = math.ceil(limits[key]) * scale  # whole units, rounded up
        hard = value + 1 if which == resource.RLIMIT_CPU else value  # SIGXCPU at the soft limit, SIGKILL 1 s later
        resource.setrlimit(which, (value, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def install_seccomp(program: bytes) -> None:
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    fprog = SockFprog(len(program) // 8, program)
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.addressof(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def main() -> None:
    try:
        header = read_header()
        report_fd, nonce = header["report_fd"], header["nonce"].encode()
        for name, text in {**header["files"], "main.py": header["code"]}.items():
            os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
            with open(name, "w", encoding="utf-8") as f:
                f.write(text)
        set_limits(header["limits"])
        if header["seccomp"]:
            install_seccomp(base64.b64decode(header["seccomp"]))
        source = header.pop("code")
        del header
        os.write(report_fd, b"ready\n")
    except Exception as e:
        sys.stderr.write(f"sandbox: the child could not start: {type(e).__name__}: {e}\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)

    builtins.exit = builtins.quit = sys.exit  # what the site module (not loaded: -S) would provide
    module = types.ModuleType("__main__")
    module.__file__ = "main.py"
    sys.modules["__main__"] = module
    sys.argv = ["main.py"]
    sys.path.insert(0, os.getcwd())
    try:
        exec(compile(source, "main.py", "exec"), module.__dict__)
    except SystemExit:
        raise  # the interpreter exits with its code; no nonce
    except BaseException as e:
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)  # without this frame
        sys.exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(report_fd, nonce + b"\n")


if __name__ == "__main__":
    main()
