"""Kill-and-restart scenarios (issue 22): a running Linux guest under QEMU (the vhost-user
chardev with reconnect=1) while a supervisor on the host `kill -9`s the back-end at random
points (seeded, printed) and starts it again on the same socket, within one guest boot.

  blk-restart[-packed|-iommu]  blk-stress in the guest (4 writers, 2 readers, O_DIRECT, every
                               block verified) against `serve --direct` (io_uring: completions
                               out of order); --kills kills; zero I/O errors, the guest's own
                               verification, its kernel log, the image byte for byte
  blk-restart-qsd              the same against qemu-storage-daemon: a comparison, reported,
                               never failing the run
  net-restart                  pings through the switch (net-peer the other port) go on after
                               each of --net-kills kills; the guest's device is never reset
"""

import random
import re
import time

import interop
from interop import log
from interop_stress import (Backend, Verdicts, backend_template, elapsed_since, make_image, report, stress_checks,
                            stress_params, write_stop)


class KillSupervisor:
    """Driven from run_qemu's tick (the main thread): once `ready` is set, waits a random
    delay, kills the back-end with SIGKILL, starts it again, waits for QEMU to reconnect
    (an accepted connection on the socket), calls `on_restarted`, and again until `kills`
    kills; `on_done` after a last settling delay. A back-end that dies by itself is counted
    and restarted."""

    def __init__(self, backend, kills, rng, delay, on_restarted=None, on_done=None, settle=2.0, reconnect_limit=30.0):
        self.backend, self.kills, self.rng, self.delay = backend, kills, rng, delay
        self.on_restarted, self.on_done, self.settle, self.reconnect_limit = on_restarted, on_done, settle, reconnect_limit
        self.ready = False
        self.state = "waiting"
        self.next_at = None
        self.events = []            # one dict per kill
        self.unexpected_deaths = 0
        self.failures = []

    def _restart(self, event):
        t = time.monotonic()
        self.backend.start()
        event["restart_s"] = round(time.monotonic() - t, 3)
        self.state = "reconnecting"

    def tick(self, _elapsed):
        now = time.monotonic()
        if self.state == "waiting" and self.ready:
            self.next_at = now + self.rng.uniform(*self.delay)
            self.state = "running"
        elif self.state == "running":
            if not self.backend.alive():
                self.unexpected_deaths += 1
                self.failures.append("the back-end exited by itself (status %s)" % self.backend.proc.poll())
                event = {"kill": None, "at": now, "unexpected": True}
                self.events.append(event)
                self._restart(event)
            elif now >= self.next_at:
                event = {"kill": sum(1 for e in self.events if e["kill"]) + 1, "at": now}
                self.backend.kill()
                self.events.append(event)
                self._restart(event)
        elif self.state == "reconnecting":
            event = self.events[-1]
            if self.backend.connected():
                event["reconnect_s"] = round(now - event["at"], 3)
                event["back_at"] = now
                if self.on_restarted is not None:
                    self.on_restarted()
                log("kill %s: back-end restarted in %.2f s, QEMU reconnected %.2f s after the kill"
                    % (event["kill"] or "(died by itself)", event["restart_s"], event["reconnect_s"]))
                if self.killed() >= self.kills:
                    self.state = "settling"
                    self.next_at = now + self.settle
                else:
                    self.next_at = now + self.rng.uniform(*self.delay)
                    self.state = "running"
            elif now - event["at"] > self.reconnect_limit:
                self.failures.append("QEMU did not reconnect within %.0f s of kill %s" % (self.reconnect_limit, event["kill"]))
                self.state = "settling"
                self.next_at = now
        elif self.state == "settling" and now >= self.next_at:
            self.state = "done"
            if self.on_done is not None:
                self.on_done()

    def killed(self):
        return sum(1 for e in self.events if e["kill"])

    def reconnect_times(self):
        return [e.get("reconnect_s") for e in self.events if e["kill"]]


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def run_checks(v, run):
    v.check("guest booted (VG-BOOT on the console)", run.boot_host is not None)
    v.check("scenario finished (VG-END) before the timeout", run.ended and not run.timed_out,
            "timed out after %.0f s" % run.total if run.timed_out else "")
    v.check("QEMU exited by itself with status 0", run.qemu_rc == 0 and not run.timed_out, "status %s" % run.qemu_rc)
    v.check("all modules loaded", "insmod_failed" not in run.results, run.results.get("insmod_failed", ""))
    v.check("no guest-side error", "error" not in run.results, run.results.get("error", ""))


def supervisor_checks(v, sup, kills):
    v.check("%d kills, QEMU reconnected after each" % kills,
            sup.killed() == kills and all(t is not None for t in sup.reconnect_times()) and not sup.failures,
            "killed %d; %s" % (sup.killed(), "; ".join(sup.failures)))
    v.check("the back-end never exited by itself", sup.unexpected_deaths == 0, "%d times" % sup.unexpected_deaths)


def failure_context(ctx, tag, run, backend):
    log("--- guest console, last 60 lines ---\n%s" % (interop.tail(run.console_path) if run else "-"))
    for path in backend.logs[-2:]:
        log("--- back-end stderr %s, last 30 lines ---\n%s" % (path, interop.tail(path, 30)))
    log("--- qemu stderr, last 40 lines ---\n%s" % interop.tail(ctx.path(tag + ".qemu.log"), 40))


def scenario_blk_restart(ctx, variant, kind="ours"):
    tag = "blk-restart" + ("" if variant == "default" else "-" + variant) + ("-qsd" if kind == "qsd" else "")
    args = ctx.args
    v = Verdicts(ctx, tag, gate=kind != "qsd")
    started = time.monotonic()
    image, sock = ctx.path(tag + ".img"), ctx.path(tag + ".sock")
    make_image(image)
    backend = Backend(ctx, tag, backend_template(ctx, kind), image, sock)
    rng = random.Random("%s-%s" % (args.seed, tag))
    log("%s: %d kills, seed %s (--seed to repeat)" % (tag, args.kills, args.seed))
    timeout = max(args.timeout, 100 + args.kills * 6)
    sup = KillSupervisor(backend, args.kills, rng, (0.3, 2.0), on_done=lambda: write_stop(image))
    run = None
    try:
        backend.start()
        device = "vhost-user-blk-pci,chardev=vhost0,num-queues=1"
        if variant == "iommu":
            device += ",disable-legacy=on,iommu_platform=on,ats=on"
        if variant == "packed":
            device += ",packed=on"
        argv = interop.qemu_base(ctx, variant, interop.kernel_append(variant, stress_params(timeout - 30), False)) + [
            "-chardev", "socket,id=vhost0,path=%s,reconnect=1" % sock,
            "-device", device,
            "-serial", "file:%s" % ctx.path(tag + ".console")]
        log("%s: %s" % (tag, " ".join(interop.quote(a) for a in argv)))

        def on_line(line, _seconds):
            if "VG-RESULT stress_started=1" in line:
                sup.ready = True

        run = interop.run_qemu(argv, ctx.path(tag + ".console"), ctx.path(tag + ".qemu.log"), timeout,
                               on_tick=sup.tick, on_line=on_line)
        log("%s: boot %.1f s (host), scenario end %.1f s, QEMU exit %.1f s"
            % (tag, run.boot_host or -1, run.end_host or -1, run.total))
        run_checks(v, run)
        supervisor_checks(v, sup, args.kills)
        outcome = stress_checks(v, run, image)
        if variant == "iommu":
            interop.iommu_checks(ctx, tag, run.results, False)
    except interop.ScenarioFailure as exc:
        v.check("set-up", False, str(exc))
        outcome = {}
    finally:
        backend.stop()
    restore_failures = len(re.findall("ring restore failed", interop.tail(ctx.path(tag + ".qemu.log"), 2000)))
    # our back-end logs what it resubmits after a restart: how many kills caught requests in flight
    resubmitted = [int(n) for path in backend.logs for n in re.findall(r"resubmits (\d+) request", read_text(path))]
    times = [t for t in sup.reconnect_times() if t is not None]
    report(dict({"scenario": tag, "backend": backend.argv[0].split("/")[-1], "seed": args.seed, "kills": sup.killed(),
                 "reconnect_s_max": max(times) if times else None, "qemu_ring_restore_failed": restore_failures,
                 "restarts_resubmitting": len(resubmitted), "requests_resubmitted": sum(resubmitted),
                 "ok": all(v.outcomes.values()), "wall_s": elapsed_since(started)}, **outcome))
    if not all(v.outcomes.values()):
        failure_context(ctx, tag, run, backend)


def scenario_net_restart(ctx, variant):
    tag = "net-restart"
    args = ctx.args
    v = Verdicts(ctx, tag)
    if interop.refuse_reference(ctx, tag, "net"):
        return
    started = time.monotonic()
    sock = ctx.path(tag + ".sock")
    backend = Backend(ctx, tag, "%s serve --device net --socket {socket} --verbose" % args.binary, None, sock)
    rng = random.Random("%s-%s" % (args.seed, tag))
    peers = []
    replies = []                  # (host time, icmp_seq) of each echo reply the guest saw

    def start_peer():
        argv = [args.binary, "net-peer", "--socket", sock, "--ip", interop.NET_PEER_IP, "--seconds", str(int(args.timeout))]
        if interop.net_peer_supports_mac(ctx):
            argv += ["--mac", interop.NET_PEER_MAC]
        n = len(peers)
        peers.append(interop.spawn(argv, ctx.path("%s.peer.%d.out" % (tag, n)), ctx.path("%s.peer.%d.log" % (tag, n))))

    def restart_peer():
        # the peer's session ended with the back-end: a new one joins the restarted switch
        interop.stop(peers[-1])
        start_peer()

    sup = KillSupervisor(backend, args.net_kills, rng, (1.5, 3.0), on_restarted=restart_peer, settle=0)
    ping_seconds = 15 + args.net_kills * 6
    run = None
    try:
        backend.start()
        params = {"mode": "netping", "ip": interop.NET_GUEST_IP, "peer": interop.NET_PEER_IP, "ping_seconds": ping_seconds}
        argv = interop.qemu_base(ctx, variant, interop.kernel_append(variant, params, False)) + [
            "-chardev", "socket,id=vhost1,path=%s,reconnect=1" % sock,
            "-netdev", "vhost-user,id=net0,chardev=vhost1",
            "-device", "virtio-net-pci,netdev=net0,mac=%s,vectors=0" % interop.NET_GUEST_MAC,
            "-serial", "file:%s" % ctx.path(tag + ".console")]
        log("%s: %s" % (tag, " ".join(interop.quote(a) for a in argv)))

        def on_tick(elapsed):
            if not peers and elapsed >= 1.0:
                start_peer()
            sup.tick(elapsed)

        def on_line(line, _seconds):
            m = re.search(r"VG-PING .*bytes from .*seq=(\d+)", line)
            if m:
                replies.append((time.monotonic(), int(m.group(1))))
                sup.ready = True

        run = interop.run_qemu(argv, ctx.path(tag + ".console"), ctx.path(tag + ".qemu.log"), args.timeout + ping_seconds,
                               on_tick=on_tick, on_line=on_line)
        log("%s: boot %.1f s (host), scenario end %.1f s, QEMU exit %.1f s" % (tag, run.boot_host or -1, run.end_host or -1, run.total))
        run_checks(v, run)
        supervisor_checks(v, sup, args.net_kills)
        r = run.results
        v.check("net scenario completed in the guest", r.get("netping_done") == "1")
        v.check("link up", r.get("link") == "up", "link=%s" % r.get("link"))
        kills = [e for e in sup.events if e["kill"]]
        outages = []
        for i, e in enumerate(kills):
            until = kills[i + 1]["at"] if i + 1 < len(kills) else float("inf")
            after = [t for t, _ in replies if e["at"] < t < until]
            outages.append(round(after[0] - e["at"], 2) if after else None)
        v.check("echo replies before the first kill", bool(kills) and any(t < kills[0]["at"] for t, _ in replies))
        v.check("echo replies after every restart (the device came back)", outages and all(o is not None for o in outages),
                "seconds from each kill to the next reply: %s" % outages)
        last = kills[-1].get("back_at", float("inf")) if kills else float("inf")
        v.check("at least 3 echo replies after the last restart", sum(1 for t, _ in replies if t > last) >= 3,
                "%d" % sum(1 for t, _ in replies if t > last))
        v.check("guest kernel log: no reset, TX timeout or broken queue", r.get("kernel_virtio_reset") == "0",
                "%s; %s" % (r.get("kernel_virtio_reset"), " | ".join(x for k, x in sorted(r.items()) if k.startswith("kernel_log_"))))
        v.check("guest kernel did not oops or panic", not run.oops, " | ".join(run.oops[:3]))
        report({"scenario": tag, "seed": args.seed, "kills": sup.killed(), "replies": len(replies),
                "outage_s": outages, "carrier_changes": r.get("eth0_carrier_changes"), "ok": all(v.outcomes.values()),
                "wall_s": elapsed_since(started)})
    except interop.ScenarioFailure as exc:
        v.check("set-up", False, str(exc))
    finally:
        for peer in peers:
            interop.stop(peer)
        backend.stop()
    if not all(v.outcomes.values()):
        failure_context(ctx, tag, run, backend)


def scenario_blk_restart_qsd(ctx, variant):
    scenario_blk_restart(ctx, variant, "qsd")


SCENARIOS = {
    "blk-restart": [(scenario_blk_restart, "default")],
    "blk-restart-packed": [(scenario_blk_restart, "packed")],
    "blk-restart-iommu": [(scenario_blk_restart, "iommu")],
    "blk-restart-qsd": [(scenario_blk_restart_qsd, "default")],
    "net-restart": [(scenario_net_restart, "default")],
}
