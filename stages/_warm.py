"""Warm start of stage commands under DVC: torch imported once, each stage a fork of that process.

`dvc repro` runs one process per stage, and importing torch (with dvclive, pydantic and the
rest) costs more than many stages' own work on a small CPU. Under DVC (`$DVC_STAGE` set, and
`$OTJR_WARM` not 0) a stage command first asks a server of its project (a socket in a folder of
this user's only: `otjr-warm-<uid>/` in `$XDG_RUNTIME_DIR` or /tmp) for a process: the server has imported only third-party libraries, never this repository's code, and
forks a child per command. The child takes the command's working directory, environment,
`sys.path`, arguments and its stdin/stdout/stderr (passed over the socket), imports the pipeline
from disk as a fresh process would, runs the command and reports its exit code. Results are the
same as a fresh process's: the parent never ran torch code (no threads, no RNG draws, no CUDA).

The command process waits for its child's exit code, forwards SIGINT/SIGTERM to it, and the
child kills itself when the command process goes away (SIGKILL included). A missing server is
started in the background for the next command, which keeps the current one running locally;
the server exits once no command has run for IDLE_S seconds. A server serves only commands whose Python
executable, `sys.path` and environment (but `$DVC_STAGE`) are those it was started with.
Anything unexpected in this path falls back to running the command in its own process.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

IDLE_S = 30.0
PRELOAD = ("torch", "torch.nn.functional", "numpy", "safetensors.torch", "pydantic", "ruamel.yaml", "typer",
           "rich.progress", "dvclive", "dvc.repo",  # dvclive's Live() imports dvc.repo
           "torchattacks", "torch.fx.experimental.symbolic_shapes", "sympy")  # the attacks; FAB's backward(gradient=)
VARYING = ("DVC_STAGE",)  # set by DVC per stage: not part of the server's identity


def enabled(argv: list[str]) -> bool:
    """Under DVC, for `stage` commands, unless switched off (`OTJR_WARM=0`) or a rank of torchrun."""
    return (os.environ.get("DVC_STAGE") is not None and os.environ.get("OTJR_WARM", "1") != "0"
            and "LOCAL_RANK" not in os.environ and len(argv) > 2 and argv[1] == "stage"
            and hasattr(socket, "AF_UNIX") and hasattr(os, "fork"))


def _identity() -> str:
    env = {k: v for k, v in os.environ.items() if k not in VARYING}
    blob = json.dumps([sys.executable, sys.path, sorted(env.items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _socket_path() -> Path:
    """A socket per project root and identity, in a folder only this user can enter (AF_UNIX paths are short)."""
    root = Path(os.environ.get("OTJR_ROOT", ".")).resolve()
    key = hashlib.sha256(f"{root}\0{_identity()}".encode()).hexdigest()[:20]
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
    return base / f"otjr-warm-{os.getuid()}" / f"{key}.sock"


def _send(conn: socket.socket, obj) -> None:
    data = json.dumps(obj).encode()
    conn.sendall(struct.pack("!I", len(data)) + data)


def _recv(conn: socket.socket):
    head = _exactly(conn, 4)
    return None if head is None else json.loads(_exactly(conn, struct.unpack("!I", head)[0]))


def _exactly(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            return None
        buf += part
    return buf


# ------------------------------------------------------------------ the command's side
def run(argv: list[str]) -> int | None:
    """Run `argv` in a warm child; its exit code, or None to run it here (no server: one is started)."""
    path = _socket_path()
    if len(str(path)) > 100 or not _private(path.parent):  # AF_UNIX paths are limited to ~107 bytes
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        _start_server(path)
        return None
    try:
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path}).encode()
        fds = array.array("i", [0, 1, 2])
        conn.sendmsg([struct.pack("!I", len(request)) + request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        started = _recv(conn)
    except OSError:
        started = None
    if not started:  # the server went away before forking: nothing ran
        conn.close()
        return None
    child = int(started["pid"])

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        done = _recv(conn)
    except OSError:
        done = None
    conn.close()
    if done is None:  # the child died without reporting (killed): as a killed process would
        print("error: the stage's process ended without an exit code", file=sys.stderr)
        return 1
    return int(done["code"])


def _private(folder: Path) -> bool:
    """`folder` exists (created if not), belongs to this user and only this user can enter it."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def _start_server(path: Path) -> None:
    try:
        subprocess.Popen([sys.executable, os.path.abspath(__file__), str(path)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True)
    except OSError:
        pass


# ------------------------------------------------------------------ the server's side
def serve(path: Path) -> None:
    """Bind `path` (only one server wins), preload, then fork a child per command until idle."""
    import importlib

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # never this folder's modules
    lock = path.with_suffix(".lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server for this identity is starting or running
    for name in PRELOAD:  # third-party only: this repository's code is imported by each child, fresh
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional library missing is the child's concern
            pass
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    server.listen(16)
    server.settimeout(1.0)
    children: set[int] = set()
    idle_since = time.monotonic()
    try:
        while True:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                _reap(children)
                if children:  # idle means no command running: a training may take many minutes
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > IDLE_S:
                    break
                continue
            if not _same_user(conn):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                server.close()
                os.close(fd)
                _child(conn)  # never returns
            children.add(pid)
            conn.close()
    finally:
        path.unlink(missing_ok=True)
        server.close()


def _reap(children: set[int]) -> None:
    """Collect the children that ended (each within a second of its end)."""
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _child(conn: socket.socket) -> None:
    code = 1
    try:
        os.setsid()
        msg, ancdata, _flags, _addr = conn.recvmsg(1 << 20, socket.CMSG_SPACE(3 * array.array("i").itemsize))
        fds = array.array("i")
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        length = struct.unpack("!I", msg[:4])[0]
        body = msg[4:]
        while len(body) < length:
            body += conn.recv(length - len(body))
        request = json.loads(body)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        sys.argv = request["argv"]
        _send(conn, {"pid": os.getpid()})
        threading.Thread(target=_die_with_caller, args=(conn,), daemon=True).start()
        try:
            import stages

            stages.main_here()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - reported as a fresh process would
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            _send(conn, {"code": code})
        except Exception:  # noqa: BLE001
            pass
        os._exit(code)


def _die_with_caller(conn: socket.socket) -> None:
    """The command process closed its end (finished, or was killed): end this child too."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
