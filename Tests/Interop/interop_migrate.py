"""Live migration scenarios (issue 22): QEMU migrates a running guest, blk-stress writing
and verifying on a vhost-user-blk device, to a second QEMU on this machine (-incoming over a
unix socket), each QEMU with its own back-end process on the same image. Guest RAM is a
memfd with share=on and prealloc=on (without prealloc guests crashed after migration here,
even with QEMU's built-in virtio-blk). QEMU is driven through QMP: `migrate`, then
`query-migrate` until it completes; downtime and total time are reported. After the
migration the guest goes on writing on the destination, then reads back and verifies
everything, and the image must match byte for byte.

  migrate      against `virtio-grant serve` (QEMU 7.2 refuses to migrate a vhost-user device
               whose back-end lacks VHOST_USER_PROTOCOL_F_LOG_SHMFD)
  migrate-qsd  against qemu-storage-daemon: the anchor (a comparison, never failing the run)
"""

import json
import random
import re
import socket
import time

import interop
from interop import log
from interop_stress import (Backend, Verdicts, backend_template, elapsed_since, make_image, report, stress_checks,
                            stress_params, write_stop)


class QMP:
    """A minimal QMP client on a unix socket: capabilities negotiated, then one command at a time."""

    def __init__(self, path, seconds=15):
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(10)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise interop.ScenarioFailure("no QMP socket at %s within %d s" % (path, seconds))
                time.sleep(0.1)
        self.buffer = b""
        self.events = []
        self._read()                       # the greeting
        self.execute("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise interop.ScenarioFailure("QMP connection closed")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command, **arguments):
        """The command's "return" value; an {"error": ...} answer becomes a ScenarioFailure."""
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            answer = self._read()
            if "event" in answer:
                self.events.append(answer)
                continue
            if "error" in answer:
                raise interop.ScenarioFailure("QMP %s: %s" % (command, answer["error"].get("desc", answer["error"])))
            return answer.get("return")

    def close(self):
        self.sock.close()


def qemu_for_migration(ctx, tag, side, sock, params):
    """The QEMU command of one side: RAM a preallocated shared memfd, a QMP socket, the console in TAG.SIDE.console."""
    argv = interop.qemu_base(ctx, "default", interop.kernel_append("default", params, False))
    argv = [a + ",prealloc=on" if a.startswith("memory-backend-memfd,") else a for a in argv]
    argv += ["-chardev", "socket,id=vhost0,path=%s" % sock,
             "-device", "vhost-user-blk-pci,chardev=vhost0,num-queues=1",
             "-qmp", "unix:%s,server=on,wait=off" % ctx.path("%s.%s.qmp" % (tag, side)),
             "-serial", "file:%s" % ctx.path("%s.%s.console" % (tag, side))]
    if side == "dst":
        argv += ["-incoming", "unix:%s" % ctx.path(tag + ".migration.sock")]
    return argv


def scenario_migrate(ctx, variant, kind="ours"):
    tag = "migrate" + ("-qsd" if kind == "qsd" else "")
    args = ctx.args
    v = Verdicts(ctx, tag, gate=kind != "qsd")
    started = time.monotonic()
    rng = random.Random("%s-%s" % (args.seed, tag))
    image = ctx.path(tag + ".img")
    make_image(image)
    template = backend_template(ctx, kind)
    backends = [Backend(ctx, "%s.%s" % (tag, side), template, image, ctx.path("%s.%s.sock" % (tag, side))) for side in ("src", "dst")]
    timeout = max(args.timeout, 150)
    params = stress_params(timeout - 30)
    run = interop.GuestRun()
    run.console_path = ctx.path(tag + ".dst.console")
    src = dst = qmp = None
    outcome, info = {}, {}
    try:
        for b in backends:
            b.start()
        t0 = time.monotonic()
        consoles = []
        seen = {"src_passes": 0, "dst_passes": None}       # the guest's passes: last on the source, final on the destination

        def watcher(side):
            def on_line(line, _seconds):
                m = re.search(r"VG-PROGRESS .*passes=(\d+)", line)
                if m and side == "src":
                    seen["src_passes"] = int(m.group(1))
                m = re.search(r"VG-RESULT stress_passes=(\d+)", line)
                if m:
                    seen[side + "_passes"] = int(m.group(1))
            return on_line

        for side, b in (("src", backends[0]), ("dst", backends[1])):
            argv = qemu_for_migration(ctx, tag, side, b.sock, params)
            log("%s %s: %s" % (tag, side, " ".join(interop.quote(a) for a in argv)))
            consoles.append(interop.Console(ctx.path("%s.%s.console" % (tag, side)), run, t0, watcher(side)))
            proc = interop.spawn(argv, ctx.path("%s.%s.qemu.log" % (tag, side)), ctx.path("%s.%s.qemu.log" % (tag, side)))
            src, dst = (proc, dst) if side == "src" else (src, proc)

        def pump(until, seconds):
            """Parses both consoles until `until()` holds or `seconds` pass; False on the timeout."""
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for c in consoles:
                    c.consume()
                if until():
                    return True
                if src.poll() is not None and dst.poll() is not None:
                    return until()
                time.sleep(0.1)
            return False

        if not pump(lambda: run.results.get("stress_started") == "1" or "error" in run.results, timeout / 2):
            raise interop.ScenarioFailure("the guest did not start its stress tool on the source")
        pump(lambda: False, rng.uniform(2.0, 4.0))        # the guest writing: migrate in the middle of it
        qmp = QMP(ctx.path(tag + ".src.qmp"))
        qmp.execute("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
        log("%s: migrate at %.1f s after QEMU start" % (tag, time.monotonic() - t0))
        migrate_started = time.monotonic()
        qmp.execute("migrate", uri="unix:%s" % ctx.path(tag + ".migration.sock"))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            info = qmp.execute("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            pump(lambda: False, 0.1)
        status = info.get("status")
        # QEMU 7.2 sometimes reports 0 for both times of a short migration: the host's own
        # measure (to the query that saw it end, polled every 0.1 s) is reported beside them.
        info["host-ms"] = round((time.monotonic() - migrate_started) * 1000)
        v.check("migration completed", status == "completed", "status %s %s" % (status, info.get("error-desc", "")))
        log("%s: migration %s: downtime %s ms, total %s ms, setup %s ms, RAM transferred %s bytes"
            % (tag, status, info.get("downtime"), info.get("total-time"), info.get("setup-time"),
               info.get("ram", {}).get("transferred")))
        if status == "completed":
            qmp.execute("quit")                             # the source is paused for good (postmigrate)
        pump(lambda: False, 3.0)                          # the guest writing on the destination
        write_stop(image)
        guest = dst if status == "completed" else src      # where the guest runs now
        pump(lambda: run.ended, timeout)
        try:
            guest.wait(30)
        except Exception:
            pass
        run.qemu_rc = guest.poll()
        run.ended = run.ended and run.qemu_rc == 0
        run.total = time.monotonic() - t0
        v.check("the guest finished (on the destination after a migration) and QEMU exited with status 0", run.ended,
                "VG-END %s, status %s" % (run.end_host is not None, run.qemu_rc))
        v.check("the back-ends stayed up", all(b.alive() for b in backends),
                "; ".join("%s: %s" % (b.tag, b.proc.poll()) for b in backends))
        if status == "completed":
            v.check("the guest went on writing and verifying on the destination",
                    seen["dst_passes"] is not None and seen["dst_passes"] > seen["src_passes"],
                    "passes: last reported on the source %s, final on the destination %s" % (seen["src_passes"], seen["dst_passes"]))
        outcome = stress_checks(v, run, image)
    except interop.ScenarioFailure as exc:
        v.check("set-up and migration", False, str(exc))
    finally:
        if qmp is not None:
            qmp.close()
        for proc in (src, dst):
            interop.stop(proc)
        for b in backends:
            b.stop()
    report(dict({"scenario": tag, "backend": backends[0].argv[0].split("/")[-1], "seed": args.seed,
                 "status": info.get("status"), "downtime_ms": info.get("downtime"), "total_ms": info.get("total-time"), "host_ms": info.get("host-ms"),
                 "setup_ms": info.get("setup-time"), "ok": all(v.outcomes.values()), "wall_s": elapsed_since(started)},
                **outcome))
    if not all(v.outcomes.values()):
        for side in ("src", "dst"):
            log("--- %s console, last 30 lines ---\n%s" % (side, interop.tail(ctx.path("%s.%s.console" % (tag, side)), 30)))
            log("--- %s qemu stderr, last 20 lines ---\n%s" % (side, interop.tail(ctx.path("%s.%s.qemu.log" % (tag, side)), 20)))
        for b in backends:
            log("--- %s back-end stderr, last 20 lines ---\n%s" % (b.tag, interop.tail(b.logs[-1], 20) if b.logs else "-"))


def scenario_migrate_qsd(ctx, variant):
    scenario_migrate(ctx, variant, "qsd")


SCENARIOS = {
    "migrate": [(scenario_migrate, "default")],
    "migrate-qsd": [(scenario_migrate_qsd, "default")],
}
