"""What the restart and migration scenarios share (Tests/Interop/interop_restart.py,
interop_migrate.py): the blk-stress image and the bytes it must hold afterwards, the
back-end commands (ours or qemu-storage-daemon, or any command given with --blk-backend),
killing and restarting a back-end on its socket, and the checks of a stress run.

A scenario that is a comparison (the qemu-storage-daemon anchor) reports its outcomes
without failing the run: `Verdicts(gate=False)`.
"""

import json
import os
import shlex
import signal
import struct
import time

import interop
from interop import log

BLOCK = 4096
WRITERS = 4
READERS = 2
AREA_BLOCKS = 256                       # per writer: 1 MiB
CONTROL_BLOCK = 2048                    # at 8 MiB: the host writes VGSTOP!! here
IMAGE_BYTES = (CONTROL_BLOCK + 256) * BLOCK
STOP = b"VGSTOP!!"
K1, K2, K3 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
U64 = (1 << 64) - 1


def stress_block(b, g):
    """block(b, g) of blk-stress.c: the bytes block b holds after generation g."""
    base = (b * K1 + g * K2) & U64
    return struct.pack("<512Q", 0x4B4C424756, b, g, ~(b ^ g) & U64, *[(base + i * K3) & U64 for i in range(4, 512)])


def make_image(path):
    with open(path, "wb") as f:
        f.truncate(IMAGE_BYTES)


def expected_image(gens):
    """The image after writer w finished generation gens[w] and the host wrote STOP."""
    out = bytearray(IMAGE_BYTES)
    for w, g in enumerate(gens):
        for b in range(w * AREA_BLOCKS, (w + 1) * AREA_BLOCKS):
            out[b * BLOCK:(b + 1) * BLOCK] = stress_block(b, g) if g else bytes(BLOCK)
    out[CONTROL_BLOCK * BLOCK:CONTROL_BLOCK * BLOCK + len(STOP)] = STOP
    return bytes(out)


def write_stop(image):
    """Asks the guest's blk-stress to finish (it reads the control block every 300 ms)."""
    with open(image, "r+b") as f:
        f.seek(CONTROL_BLOCK * BLOCK)
        f.write(STOP)
        f.flush()
        os.fsync(f.fileno())


def stress_params(max_seconds):
    return {"mode": "stress", "writers": WRITERS, "readers": READERS, "area": AREA_BLOCKS,
            "control": CONTROL_BLOCK, "stress_max": int(max_seconds)}


# --------------------------------------------------------------------------
# back-end commands
# --------------------------------------------------------------------------

def backend_template(ctx, kind, direct=True):
    """The blk back-end command, {image} and {socket} to fill in: --blk-backend if given,
    else ours (`serve --direct`: io_uring, completions in any order) or qemu-storage-daemon
    (locking=off: the migration scenario opens the image from two daemons at once)."""
    if ctx.args.blk_backend and kind != "qsd":
        return ctx.args.blk_backend
    if kind == "qsd" or ctx.args.reference:
        return ("qemu-storage-daemon --blockdev driver=file,node-name=file0,filename={image},locking=off,cache.direct=on,aio=io_uring "
                "--blockdev driver=raw,node-name=disk0,file=file0 "
                "--export type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path={socket},writable=on")
    return "%s serve --device blk --image {image} --socket {socket} --verbose%s" % (
        shlex.quote(ctx.args.binary), " --direct" if direct else "")


def unix_connections(path):
    """Connected sockets bound to `path` (/proc/net/unix): the back-end's accepted connections."""
    n = 0
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7] == path and fields[5] == "03":
                    n += 1
    except OSError:
        pass
    return n


class Backend:
    """One back-end command on one socket that can be killed (SIGKILL) and started again;
    every incarnation's stderr goes to TAG.backend.N.log."""

    def __init__(self, ctx, tag, template, image, sock):
        self.ctx, self.tag, self.sock = ctx, tag, sock
        self.argv = [a.format(image=image, socket=sock) for a in shlex.split(template)]
        self.proc = None
        self.generation = 0
        self.logs = []

    def start(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)      # a killed back-end leaves its socket file behind
        log_path = self.ctx.path("%s.backend.%d.log" % (self.tag, self.generation))
        self.logs.append(log_path)
        if self.generation == 0:
            log("back-end: " + " ".join(interop.quote(a) for a in self.argv))
        self.proc = interop.spawn(self.argv, self.ctx.path("%s.backend.%d.out" % (self.tag, self.generation)), log_path)
        self.generation += 1
        if not interop.wait_for_socket(self.sock, self.proc, 15):
            raise interop.ScenarioFailure("the back-end's socket %s did not appear within 15 s (exit status %s)\n%s"
                                          % (self.sock, self.proc.poll(), interop.tail(log_path)))

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def connected(self):
        return unix_connections(self.sock) > 0

    def stop(self):
        return interop.stop(self.proc)


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------

class Verdicts:
    """Checks of one scenario: with gate=True they are the run's checks; with gate=False (a
    comparison run) each outcome is reported and none fails the run."""

    def __init__(self, ctx, tag, gate=True):
        self.ctx, self.tag, self.gate = ctx, tag, gate
        self.outcomes = {}

    def check(self, name, ok, detail=""):
        self.outcomes[name] = bool(ok)
        if self.gate:
            return self.ctx.checks.check(self.tag, name, ok, detail)
        log("%s (comparison, not a gate): %s: %s%s" % (self.tag, name, "held" if ok else "DID NOT HOLD",
                                                       (" (" + detail + ")") if detail and not ok else ""))
        return ok


def as_int(results, key, default=-1):
    try:
        return int(results.get(key, default))
    except (TypeError, ValueError):
        return default


def stress_checks(v, run, image):
    """The guest's own verification, its kernel log, then the image byte for byte."""
    r = run.results
    v.check("guest booted and started the stress tool", r.get("stress_started") == "1", r.get("error", ""))
    v.check("the stress run ended in the guest (not stalled)", r.get("stress_tool_ended") == "1" and r.get("stress_stalled") == "0",
            "tool_ended=%s stalled=%s" % (r.get("stress_tool_ended"), r.get("stress_stalled")))
    v.check("the guest saw the host's stop", r.get("stress_stop_seen") == "1")
    v.check("zero I/O errors (the guest's tool)", as_int(r, "stress_io_errors") == 0,
            "io_errors=%s %s" % (r.get("stress_io_errors"), problems(r)))
    v.check("every block read back as written (the guest's verification)",
            as_int(r, "stress_verify_failures") == 0 and as_int(r, "stress_read_blocks_verified") > 0,
            "verify_failures=%s read_blocks_verified=%s %s" % (r.get("stress_verify_failures"),
                                                               r.get("stress_read_blocks_verified"), problems(r)))
    v.check("guest kernel log: no I/O error", as_int(r, "kernel_io_errors") == 0, "%s; %s" % (r.get("kernel_io_errors"), kernel_lines(r)))
    v.check("guest kernel log: no 'is not a head'", as_int(r, "kernel_not_a_head") == 0, "%s; %s" % (r.get("kernel_not_a_head"), kernel_lines(r)))
    v.check("guest kernel log: no hung task", as_int(r, "kernel_hung_task") == 0, "%s; %s" % (r.get("kernel_hung_task"), kernel_lines(r)))
    v.check("guest kernel did not oops or panic", not run.oops, " | ".join(run.oops[:3]))
    gens = [as_int(r, "stress_gen_w%d" % w, 0) for w in range(WRITERS)]
    with open(image, "rb") as f:
        actual = f.read()
    expected = expected_image(gens)
    detail = ""
    if actual != expected:
        bad = [i // BLOCK for i in range(0, min(len(actual), len(expected)), BLOCK) if actual[i:i + BLOCK] != expected[i:i + BLOCK]]
        detail = "generations %s; %d blocks differ, first %s; image %d bytes, expected %d" % (
            gens, len(bad), bad[:5], len(actual), len(expected))
    v.check("the image byte for byte as the guest wrote it", actual == expected and all(gens), detail)
    return {"passes": as_int(r, "stress_passes"), "writes": as_int(r, "stress_writes"), "reads": as_int(r, "stress_reads"),
            "io_errors": as_int(r, "stress_io_errors"), "verify_failures": as_int(r, "stress_verify_failures"),
            "max_latency_ms": r.get("stress_max_latency_ms"), "stalled": r.get("stress_stalled"),
            "not_a_head": as_int(r, "kernel_not_a_head"), "kernel_io_errors": as_int(r, "kernel_io_errors")}


def problems(r):
    return " ".join(v for k, v in sorted(r.items()) if k.startswith("stress_problem_"))[:400]


def kernel_lines(r):
    return " | ".join(v for k, v in sorted(r.items()) if k.startswith("kernel_log_"))[:600]


def report(record):
    print(json.dumps(record), flush=True)


def elapsed_since(t0):
    return round(time.monotonic() - t0, 1)
