"""A seccomp deny-list as a classic BPF program, built in Python (no libseccomp needed).

The child installs it on itself (prctl PR_SET_SECCOMP, child.py) before the code runs; every process the code starts
inherits it. Denied calls fail with EPERM, so ordinary code sees an error instead of a crash:

- network: `socket()` of any family but AF_UNIX (no TCP/UDP/raw sockets, no netlink);
- other processes: ptrace, process_vm_readv/writev, pidfd_getfd/pidfd_send_signal; signals (kill, tkill, tgkill,
  sigqueue) and prlimit only to the call's own process group or process when `own_pid` is given (the process backend,
  which shares the trainer's pid namespace);
- new processes, for root only (Linux does not apply RLIMIT_NPROC to root): fork, vfork and clone without
  CLONE_THREAD fail with EAGAIN, threads stay allowed (their number is bounded by the memory limit);
- escaping the process group the parent kills at the deadline: setsid, setpgid;
- the kernel's larger attack surface: namespaces (unshare, setns, clone with CLONE_NEW* flags; clone3 answers ENOSYS
  so libc falls back to clone), mount and the new mount API, chroot, pivot_root, bpf, perf_event_open, userfaultfd,
  io_uring, keyrings, modules, kexec, reboot, swap, clocks, hostname, open_by_handle_at, mknod, iopl/ioperm.

Syscall numbers: x86_64 and aarch64 (the kernel's asm/unistd_64.h and asm-generic/unistd.h); other machines get
no filter, and `Sandbox.describe()` says so. On x86_64 the x32 ABI (numbers with bit 30 set) is denied as a whole.
"""

from __future__ import annotations

import errno
import platform
import struct

# linux/audit.h
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
# name: (x86_64, aarch64); None where the architecture has no such call.
SYSCALLS = {
    "socket": (41, 198), "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131), "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240), "pidfd_send_signal": (424, 424), "pidfd_getfd": (438, 438),
    "prlimit64": (302, 261), "setsid": (112, 157), "setpgid": (109, 154), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "unshare": (272, 97), "setns": (308, 268), "clone": (56, 220),
    "clone3": (435, 435), "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218), "kexec_load": (246, 104),
    "kexec_file_load": (320, 294), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224), "swapoff": (168, 225),
    "syslog": (103, 116), "acct": (163, 89), "quotactl": (179, 60), "settimeofday": (164, 170),
    "clock_settime": (227, 112), "adjtimex": (159, 171), "clock_adjtime": (305, 266), "sethostname": (170, 161),
    "setdomainname": (171, 162), "iopl": (172, None), "ioperm": (173, None), "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426), "io_uring_register": (427, 427), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "mknod": (133, None), "mknodat": (259, 33), "fanotify_init": (300, 262),
    "lookup_dcookie": (212, 18), "vhangup": (153, 58), "open_tree": (428, 428), "move_mount": (429, 429),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442), "fork": (57, None), "vfork": (58, None),
}  # fmt: skip
ALWAYS_DENIED = (
    "ptrace process_vm_readv process_vm_writev pidfd_send_signal pidfd_getfd setsid setpgid mount umount2 pivot_root "
    "chroot unshare setns bpf perf_event_open userfaultfd keyctl add_key request_key kexec_load kexec_file_load "
    "init_module finit_module delete_module reboot swapon swapoff syslog acct quotactl settimeofday clock_settime "
    "adjtimex clock_adjtime sethostname setdomainname iopl ioperm io_uring_setup io_uring_enter io_uring_register "
    "open_by_handle_at name_to_handle_at mknod mknodat fanotify_init lookup_dcookie vhangup open_tree move_mount "
    "fsopen fsconfig fsmount fspick mount_setattr"
).split()
SIGNALS_AND_LIMITS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "prlimit64")
AF_UNIX = 1
# linux/sched.h: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
CLONE_THREAD = 0x00010000

# linux/filter.h, linux/seccomp.h
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
RET_ALLOW, RET_KILL_PROCESS, RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
NR, ARCH, ARG0_LOW = 0, 4, 16  # offsets in struct seccomp_data (little-endian: the low word of args[0] first)


def machine() -> str | None:
    """The architecture name the filter supports here, or None."""
    name = platform.machine().lower()
    name = {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)
    return name if name in AUDIT_ARCH else None


def build_filter(arch: str, own_pid: int | None = None, allow_fork: bool = True) -> bytes:
    """The packed `struct sock_filter[]` for `arch`. `own_pid`: the call's process (its group leader), the only
    target besides group 0 that signals and prlimit may name; None leaves them alone (a private pid namespace).
    `allow_fork=False` refuses new processes (threads stay allowed): for root, whom Linux exempts from
    RLIMIT_NPROC, so that a fork bomb cannot fill the machine's process table."""
    column = 0 if arch == "x86_64" else 1
    number = {name: nrs[column] for name, nrs in SYSCALLS.items() if nrs[column] is not None}
    code: list[tuple] = []  # (opcode, jump-if-true label or 0, jump-if-false label or 0, k)

    def op(opcode, k=0, yes=0, no=0):
        code.append((opcode, yes, no, k))

    op(LD_W_ABS, ARCH)
    op(JEQ_K, AUDIT_ARCH[arch], 0, "kill")
    op(LD_W_ABS, NR)
    if arch == "x86_64":
        op(JGE_K, X32_SYSCALL_BIT, "deny", 0)
    for name in ALWAYS_DENIED:
        if name in number:
            op(JEQ_K, number[name], "deny", 0)
    op(JEQ_K, number["clone3"], "enosys", 0)
    op(JEQ_K, number["socket"], "socket", 0)
    op(JEQ_K, number["clone"], "clone", 0)
    if not allow_fork:
        for name in ("fork", "vfork"):
            if name in number:
                op(JEQ_K, number[name], "again", 0)
    if own_pid is not None:
        for name in SIGNALS_AND_LIMITS:
            op(JEQ_K, number[name], "target", 0)
    op(RET_K, RET_ALLOW)
    labels = {"socket": len(code)}
    op(LD_W_ABS, ARG0_LOW)
    op(JEQ_K, AF_UNIX, "allow", "deny")
    labels["clone"] = len(code)
    op(LD_W_ABS, ARG0_LOW)
    op(JSET_K, CLONE_NAMESPACES, "deny", 0 if not allow_fork else "allow")
    if not allow_fork:
        op(JSET_K, CLONE_THREAD, "allow", "again")  # a new process: EAGAIN, as when RLIMIT_NPROC is reached
    if own_pid is not None:
        labels["target"] = len(code)
        op(LD_W_ABS, ARG0_LOW)
        op(JEQ_K, 0, "allow", 0)  # kill(0): the caller's own process group
        op(JEQ_K, own_pid, "allow", 0)
        op(JEQ_K, -own_pid & 0xFFFFFFFF, "allow", "deny")  # kill(-pgid): the call's group, led by own_pid
    for label, value in (
        ("allow", RET_ALLOW),
        ("deny", RET_ERRNO | errno.EPERM),
        ("enosys", RET_ERRNO | errno.ENOSYS),
        ("again", RET_ERRNO | errno.EAGAIN),
        ("kill", RET_KILL_PROCESS),
    ):
        labels[label] = len(code)
        op(RET_K, value)

    packed = []
    for i, (opcode, yes, no, k) in enumerate(code):
        jt, jf = (labels[j] - i - 1 if isinstance(j, str) else j for j in (yes, no))
        if not (0 <= jt < 256 and 0 <= jf < 256):  # classic BPF jumps forward by at most 255
            raise ValueError(f"seccomp filter jump out of range at instruction {i}")
        packed.append(struct.pack("=HBBI", opcode, jt, jf, k))
    return b"".join(packed)
