"""Stage processes without the wait for `import torch`: a fork server.

DVC runs each stage as its own process, and on the toy set each one spends about two seconds on
imports (torch, and the torch._inductor.config that torch.use_deterministic_algorithms imports) for a
fraction of a second of work (bench/run.py measures it). `python -m stages <stage> ARGS` hands
its stage to a server that has imported torch once and forks a child per stage. The child runs the
stage exactly as `python -m stages.<stage> ARGS` would, with the caller's working directory,
environment, sys.path, arguments and standard streams, and the caller exits with the child's status.
The child imports the stage code afresh, so an edit to stages/ takes effect at once. (PyTorch's own
DataLoader forks its workers from a process that has imported torch in the same way.)

The first stage starts the server; it exits after IDLE_SECONDS without a stage to run. A server
serves only callers with the same Python, interpreter options, torch install and environment (DVC's
per-stage variables aside), since torch and the libraries under it read some variables when
imported. Its socket lies in a directory only this user can enter, and it checks the caller's user id.
When anything is amiss (no server starts, the socket does not answer) the stage runs in the caller's
own process instead; SOFTMAX_FORK_SERVER=0, and any system but Linux, always does that.
"""

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import runpy
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

IDLE_SECONDS = 20
START_SECONDS = 30  # how long a caller waits for a server it started to answer
# What every stage imports; torch.use_deterministic_algorithms imports torch._inductor.config, which
# takes as long again as torch itself.
PRELOAD = ("torch", "torch.nn.functional", "torch._inductor.config", "numpy", "ruamel.yaml")
# Variables that differ from stage to stage without changing what a process is: DVC names the stage
# in DVC_STAGE (and the experiment in DVC_EXP_*), and the shell that runs a command sets these.
PER_STAGE_VARIABLES = ("PWD", "OLDPWD", "SHLVL", "_")
_INT = struct.Struct("!i")  # frame sizes, the child's pid, its exit status


def run(module: str, args: list[str]) -> int:
    """Run `module` as __main__ with `args`, on the server when one can be had; its exit status."""
    # Linux only: macOS's system libraries are not safe to fork once loaded, and Windows has no fork.
    if os.environ.get("SOFTMAX_FORK_SERVER", "1") != "0" and sys.platform == "linux":
        status = _run_on_server(module, args)
        if status is not None:
            return status
    return _run_here(module, args)


def _run_here(module: str, args: list[str]) -> int:
    sys.argv = [module, *args]  # runpy puts the module's file in argv[0], as `python -m` does
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


# The caller --------------------------------------------------------------------------------------


def _run_on_server(module: str, args: list[str]) -> int | None:
    """The stage's exit status, or None when no server ran it (then nothing of it has run)."""
    path = socket_path()
    if path is None or not all(_is_open(fd) for fd in (0, 1, 2)):
        return None
    connection = _connect(path) or _start_server(path)
    if connection is None:
        return None
    with connection:
        request = {"module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path}
        try:
            socket.send_fds(connection, [b"."], [0, 1, 2])
            _send_frame(connection, json.dumps(request).encode())
            child = _receive_int(connection)
        except OSError:
            return None
        if child is None:  # the server went away before it forked: nothing has run
            return None
        # Ctrl-C and kill reach this process, not the child: pass them on.
        passed_on: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda signum, _frame, child=child: _pass_on(child, signum, passed_on))
        status = _receive_int(connection)
    if status is None and passed_on:  # the signal ended the child: the shell's status for that
        return 128 + passed_on[-1]
    if status is None:
        print(f"{module}: the stage process {child} ended without an exit status", file=sys.stderr)
        return 1
    return status


def _pass_on(child: int, signum: int, passed_on: list[int]) -> None:
    passed_on.append(signum)
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, signum)


def socket_path() -> Path | None:
    """Where the server for this Python, torch and environment listens; None when no private
    directory can be had for it."""
    torch = importlib.util.find_spec("torch")  # finds torch without importing it
    if torch is None or torch.origin is None:
        return None
    environment = sorted(
        (name, value)
        for name, value in os.environ.items()
        if not name.startswith("DVC_") and name not in PER_STAGE_VARIABLES
    )
    identity = [sys.executable, sys.version, subprocess._args_from_interpreter_flags(), torch.origin,
                os.stat(torch.origin).st_mtime_ns, environment]  # fmt: skip
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    directory = base / f"softmax-stages-{os.getuid()}"
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        info = directory.lstat()
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077 == 0
    path = directory / f"{key}.sock"
    return path if private and len(str(path)) < 100 else None  # a socket's path has a length limit


def _connect(path: Path) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError:
        connection.close()
        return None
    return connection


def _start_server(path: Path) -> socket.socket | None:
    command = [sys.executable, *subprocess._args_from_interpreter_flags(), "-m", "stages.forkserver", str(path)]
    server = subprocess.Popen(
        command,
        cwd=Path(__file__).resolve().parent.parent,  # where this `stages` package lives
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this process; Ctrl-C in the terminal does not reach it
    )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        connection = _connect(path)
        if connection is not None:
            return connection
        time.sleep(0.01)
    return _connect(path)  # another caller's server may have taken the path


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _send_frame(connection: socket.socket, payload: bytes) -> None:
    connection.sendall(_INT.pack(len(payload)) + payload)


def _receive_exactly(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _receive_int(connection: socket.socket) -> int | None:
    data = _receive_exactly(connection, _INT.size)
    return None if data is None else _INT.unpack(data)[0]


# The server --------------------------------------------------------------------------------------


def serve(path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
    except OSError:
        if _connect(path) is not None:
            return  # another server is already there
        path.unlink(missing_ok=True)  # one that ended without cleaning up
        listener.bind(str(path))
    ours = path.stat().st_ino
    listener.listen()
    for name in PRELOAD:  # callers that connect meanwhile wait in the listen queue
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # stage processes need no reaping
    listener.settimeout(IDLE_SECONDS)
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                return
            if os.fork() == 0:
                listener.close()
                _serve_one(connection)  # never returns
            connection.close()
    finally:
        listener.close()
        if path.exists() and path.stat().st_ino == ours:
            path.unlink()


def _serve_one(connection: socket.socket) -> None:
    """In the forked child: become the caller's stage process, run the stage, report its status."""
    status = 1
    try:
        # Signals as a fresh interpreter has them, whatever the server inherited: the caller passes
        # Ctrl-C (KeyboardInterrupt) and kill on to this process.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        _, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        _, fds, _, _ = socket.recv_fds(connection, 1, 3)
        size = _receive_int(connection)
        payload = None if size is None else _receive_exactly(connection, size)
        if uid != os.getuid() or len(fds) != 3 or payload is None:
            os._exit(1)
        request = json.loads(payload)
        connection.sendall(_INT.pack(os.getpid()))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _become_caller(request)
        try:
            status = _run_here(request["module"], request["args"])
        except SystemExit as exit:
            status = _exit_status(exit.code)
        except KeyboardInterrupt:
            status = 128 + signal.SIGINT
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        connection.sendall(_INT.pack(status))
    finally:
        os._exit(0)


def _become_caller(request: dict) -> None:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = request["path"]
    # The stage code is the caller's, not whatever the server itself was started from.
    for name in [name for name in sys.modules if name == "stages" or name.startswith("stages.")]:
        del sys.modules[name]
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        old = getattr(sys, name)
        line_buffered = name == "stderr" or os.isatty(fd)  # as Python sets up its own streams
        # Left open: it is the stage's stream from now on.
        new = open(fd, mode, buffering=1 if line_buffered else -1, encoding=old.encoding, errors=old.errors,  # noqa: SIM115
                   closefd=False)  # fmt: skip
        setattr(sys, name, new)
        setattr(sys, f"__{name}__", new)


def _exit_status(code: object) -> int:
    """What the interpreter makes of SystemExit(code): None is 0, an int itself, anything else is
    printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
