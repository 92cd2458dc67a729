#!/usr/bin/env python3
"""Real-guest interop test for the virtio-grant vhost-user back-end.

Boots a Linux guest under QEMU (TCG, no KVM needed) from a tiny initramfs this
script builds itself (busybox-static + the virtio modules + guest-init.sh as
/init), with a vhost-user device whose back-end is either our binary
(`virtio-grant serve`, the default) or QEMU's own (`--reference`:
qemu-storage-daemon). The guest runs one scenario, prints `VG-RESULT key=value`
lines on the serial console and powers off; this script checks them, and for
the block scenarios also checks the image file's bytes after the run.

Scenarios:
  blk        virtio-blk: O_DIRECT pattern write + read back, a region the host
             wrote before boot, a buffered write + fsync, a single sector, the
             last MiB; checksums in the guest and the image's bytes on the host
  blk-packed the same with packed=on: Linux's packed-virtqueue driver
  blk-iommu  the same behind an emulated Intel IOMMU (q35, intel-iommu with
             device-iotlb, the device with iommu_platform=on,ats=on), the guest
             booted with intel_iommu=on; DMAR and the IOMMU group are checked
  bench      dd throughput, 1 MiB blocks, O_DIRECT, write then read, in both
             variants (default and iommu); one JSON line per result on stdout
  net        virtio-net over vhost-user to `virtio-grant serve --device net`,
             with `virtio-grant net-peer` answering ARP and ping on the switch
  rng        virtio-rng over vhost-user-rng-pci to `virtio-grant serve --device
             rng`: the guest reads RNG_BYTES (64 KiB) from /dev/hwrng within a
             timeout; the byte count, the spread of byte values and the back-end's
             session report are checked on the host
  vsock      virtio-vsock over vhost-user-vsock-pci to `virtio-grant serve --device
             vsock` (host unix sockets, Firecracker's layout): VSOCK_CONNS (16)
             concurrent exchanges of 1 MiB each way that the guest opens to a host
             program, as many that the host opens to the guest (CONNECT 6000), each
             byte checked and CRC32s compared; a host program and a host client that
             close mid-stream (the guest sees the reset and the short stream, the
             others go on). Guest side: Tests/Interop/vsock-peer.c, built static
  all        all of the above (net, rng and vsock are skipped with --reference:
             QEMU ships no vhost-user-net, -rng or -vsock back-end)

Crash, restart and migration (issue 22; interop_restart.py, interop_migrate.py,
interop_stress.py; the guest runs Tests/Interop/blk-stress.c: 4 writers and 2 readers,
Linux AIO at depth 8 each, O_DIRECT, every block verified; not part of `all`):
  blk-restart[-packed|-iommu]  `serve --direct` killed with SIGKILL --kills times (default
             20) at random points (--seed) under the running guest and started again on
             the same socket (QEMU's chardev has reconnect=1): zero I/O errors, the guest's
             verification, its kernel log ("I/O error", "is not a head", hung tasks), the
             image byte for byte; --blk-backend CMD runs any other back-end command
  blk-restart-qsd  the same against qemu-storage-daemon: reported, never failing the run
  net-restart  pings through the switch go on after each of --net-kills (default 3) kills
             and restarts; no reset, TX timeout or broken queue in the guest's kernel log
  migrate    live migration (QMP) to a second QEMU with its own back-end on the same
             image, the guest writing throughout; downtime and total time reported
  migrate-qsd  the same against qemu-storage-daemon: reported, never failing the run

Notes:
  * qemu-storage-daemon 7.2 does not offer VIRTIO_F_IOMMU_PLATFORM, so QEMU
    refuses `iommu_platform=on` with it ("iommu_platform=true is not supported
    by the device"). With --reference the iommu variant therefore runs through
    a shim in this script's vhost-user proxy: it offers the feature bit to QEMU
    (and hides it from the daemon), answers QEMU's IOTLB messages itself and
    rewrites the ring addresses of SET_VRING_ADDR from IOVA to the front-end's
    virtual addresses; the guest is booted with iommu=pt so that its DMA
    addresses equal guest-physical ones (which is all the daemon understands).
    Our own back-end gets the real thing: translated DMA (no iommu=pt) and
    QEMU's IOTLB messages.
  * --trace puts the same proxy (without the shim) between QEMU and the
    back-end and writes every vhost-user message, decoded, to vhost-user-*.trace
    in the work directory (kept with --keep; a summary is printed).
    --offer-status makes the proxy offer VHOST_USER_PROTOCOL_F_STATUS and answer
    SET_STATUS/GET_STATUS itself, to see what QEMU sends to a back-end with it.
  * The back-end sees two device sessions per boot: SeaBIOS drives the
    virtio-blk device first (VERSION_1 and a few blk features, no EVENT_IDX),
    then Linux resets it and negotiates again.
  * In the iommu variant QEMU itself faults once on SeaBIOS' old ring when
    Linux resets the device with translation already on (vtd_iova_to_slpte on
    QEMU's stderr, one "DMAR: [DMA Read]" line in the guest); the DMAR-fault
    check therefore counts only faults after the device came up.
  * Kernel command line: console=ttyS0 quiet panic=-1 [intel_iommu=on
    iommu=pt|iommu.strict=1] vg.mode=blk|bench|net|rng|vsock vg.*=...; strict invalidation
    because QEMU 7.2 relays page invalidations to vhost-user back-ends but not
    the lazy mode's global flush, after which the guest reuses IOVAs the
    back-end still holds (Spec/devices.md §3); QEMU gets -no-reboot, so a
    guest panic ends the run at once (and is reported from the console).

Layout of the blk image (MiB, --pattern-mb P, default 4): [0, P) the guest's
pattern (O_DIRECT); [P+4, P+8) host-written before boot, read by the guest;
P+12: one MiB written buffered + fsync; sector (P+14)*2048+7: one 512-byte
O_DIRECT write; the last MiB host-written. Everything else must stay zero: the
whole image is compared byte for byte after the run.

Exit status: 0 when every check of the selected scenarios held, 1 when one
failed, 2 on a usage or environment error.
"""

import argparse
import array
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GUEST_INIT = os.path.join(HERE, "guest-init.sh")

MEM = "512M"              # -m and the memfd backend size must agree
APT_PACKAGES = ["qemu-system-x86", "qemu-utils", "linux-image-amd64", "busybox-static"]
MODULES_WANTED = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "vmw_vsock_virtio_transport"]
VSOCK_PEER_C = os.path.join(HERE, "vsock-peer.c")
BLK_STRESS_C = os.path.join(HERE, "blk-stress.c")
MIB = 1 << 20

NET_GUEST_MAC = "52:54:00:12:34:56"
NET_PEER_MAC = "52:54:00:00:00:02"
NET_PEER_IP = "10.0.2.2"
NET_GUEST_IP = "10.0.2.15/24"

RNG_BYTES = 64 * 1024

VSOCK_GUEST_CID = 3
VSOCK_CONNS = 16            # concurrent exchanges each way
VSOCK_BYTES = 1 << 20       # bytes each way per exchange
VSOCK_MIDCLOSE_BYTES = 64 * 1024   # what the peers that close mid-stream let through


def log(message):
    print("interop: " + message, file=sys.stderr, flush=True)


class EnvironmentProblem(Exception):
    pass


# --------------------------------------------------------------------------
# child processes: every one is registered and killed by its pid on every exit
# --------------------------------------------------------------------------

_children = []
_children_lock = threading.Lock()


def spawn(argv, stdout_path, stderr_path, **kwargs):
    out = open(stdout_path, "wb")
    err = open(stderr_path, "wb") if stderr_path != stdout_path else out
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, **kwargs)
    finally:
        out.close()
        if err is not out:
            err.close()
    with _children_lock:
        _children.append(proc)
    return proc


def stop(proc, grace=5.0):
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    return proc.returncode


def stop_all():
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no %s)" % path
    text = data.decode("utf-8", "replace").replace("\r", "").splitlines()
    return "\n".join(text[-lines:]) if text else "(empty)"


# --------------------------------------------------------------------------
# environment: binaries, kernel, modules, busybox
# --------------------------------------------------------------------------

def elf_is_static(path):
    """True when the ELF file has no PT_INTERP program header."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def version_key(text):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_kernel():
    """The newest /boot/vmlinuz-VERSION that has /usr/lib/modules/VERSION/modules.dep."""
    candidates = []
    for name in os.listdir("/boot") if os.path.isdir("/boot") else []:
        if not name.startswith("vmlinuz-"):
            continue
        version = name[len("vmlinuz-"):]
        for base in ("/usr/lib/modules", "/lib/modules"):
            moddir = os.path.join(base, version)
            if os.path.exists(os.path.join(moddir, "modules.dep")):
                candidates.append((version_key(version), os.path.join("/boot", name), moddir, version))
                break
    if not candidates:
        return None
    candidates.sort()
    _, kernel, moddir, version = candidates[-1]
    return kernel, moddir, version


def busybox_path():
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(path) and elf_is_static(path):
            return path
    return None


def missing_tools(need_qsd):
    missing = []
    if not shutil.which("qemu-system-x86_64"):
        missing.append("qemu-system-x86_64")
    if need_qsd and not shutil.which("qemu-storage-daemon"):
        missing.append("qemu-storage-daemon")
    if find_kernel() is None:
        missing.append("kernel (/boot/vmlinuz-* with modules)")
    if busybox_path() is None:
        missing.append("static busybox")
    return missing


def ensure_tools(need_qsd):
    missing = missing_tools(need_qsd)
    if not missing:
        return
    log("missing: %s; installing %s with apt-get" % (", ".join(missing), " ".join(APT_PACKAGES)))
    if os.geteuid() != 0:
        raise EnvironmentProblem("not root: cannot apt-get install " + " ".join(APT_PACKAGES))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y"] + APT_PACKAGES):
        try:
            result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem("%s timed out" % " ".join(argv))
        if result.returncode != 0:
            raise EnvironmentProblem("%s failed:\n%s" % (" ".join(argv), result.stderr.decode("utf-8", "replace")[-3000:]))
    missing = missing_tools(need_qsd)
    if missing:
        raise EnvironmentProblem("still missing after apt-get install: " + ", ".join(missing))


def read_modules_dep(moddir):
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            if ":" not in line:
                continue
            path, rest = line.split(":", 1)
            deps[path.strip()] = rest.split()
    return deps


def module_name(path):
    base = os.path.basename(path)
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def modules_in_order(moddir, wanted):
    """Module paths (relative to moddir) for `wanted` and their dependencies,
    dependencies first; modules built into the kernel are left out."""
    deps = read_modules_dep(moddir)
    by_name = {module_name(p): p for p in deps}
    builtin = set()
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            builtin = {module_name(line.strip()) for line in f if line.strip()}
    except OSError:
        pass
    order, seen = [], set()

    def visit(path):
        if path in seen:
            return
        seen.add(path)
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        name = name.replace("-", "_")
        if name in by_name:
            visit(by_name[name])
        elif name not in builtin:
            raise EnvironmentProblem("module %s neither in %s/modules.dep nor built in" % (name, moddir))
    return order


def module_bytes(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".ko"):
        return data
    if path.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.endswith(".ko.zst"):
        zstd = shutil.which("zstd")
        if not zstd:
            raise EnvironmentProblem("%s is zstd-compressed and there is no zstd binary" % path)
        return subprocess.run([zstd, "-dc", path], capture_output=True, check=True, timeout=60).stdout
    raise EnvironmentProblem("unknown module format: " + path)


# --------------------------------------------------------------------------
# initramfs: newc cpio written here, gzip'd with python's gzip
# --------------------------------------------------------------------------

class Cpio:
    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1
        self.mtime = int(time.time())

    def _entry(self, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        name_bytes = name.encode() + b"\0"
        header = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, self.mtime, len(data), 0, 0, rdev[0], rdev[1], len(name_bytes), 0))
        self.ino += 1
        self.out.write(header.encode() + name_bytes)
        self.out.write(b"\0" * ((4 - (110 + len(name_bytes)) % 4) % 4))
        self.out.write(data)
        self.out.write(b"\0" * ((4 - len(data) % 4) % 4))

    def directory(self, name, mode=0o755):
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        data = self.out.getvalue()
        return data + b"\0" * ((512 - len(data) % 512) % 512)


def build_static_tool(directory, source, name):
    """A guest-side program, static (the initramfs has no libc); None, with a note, when there
    is no gcc (the scenarios that need it then fail in the guest)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        log("note: no gcc; the initramfs gets no %s (the scenarios that need it will fail)" % name)
        return None
    out = os.path.join(directory, name)
    r = subprocess.run([gcc, "-static", "-O2", "-Wall", "-pthread", "-o", out, source], capture_output=True, timeout=120)
    if r.returncode != 0:
        raise EnvironmentProblem("gcc -static %s failed: %s" % (os.path.basename(source), r.stderr.decode(errors="replace")[-2000:]))
    return out


def build_initramfs(path, busybox, moddir):
    module_paths = modules_in_order(moddir, MODULES_WANTED)
    cpio = Cpio()
    for d in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "root"):
        cpio.directory(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    with open(busybox, "rb") as f:
        cpio.file("bin/busybox", f.read(), 0o755)
    applets = subprocess.run([busybox, "--list"], capture_output=True, check=True, timeout=30).stdout.decode().split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            cpio.symlink("bin/" + applet, "busybox")
    cpio.symlink("sbin", "bin")
    cpio.directory("usr")
    cpio.symlink("usr/bin", "../bin")
    cpio.symlink("usr/sbin", "../bin")
    names = []
    for rel in module_paths:
        name = module_name(rel)
        cpio.file("lib/modules/%s.ko" % name, module_bytes(os.path.join(moddir, rel)))
        names.append(name)
    cpio.file("etc/vg-modules", ("\n".join(names) + "\n").encode())
    for source, name in ((VSOCK_PEER_C, "vsock-peer"), (BLK_STRESS_C, "blk-stress")):
        tool = build_static_tool(os.path.dirname(path), source, name)
        if tool is not None:
            with open(tool, "rb") as f:
                cpio.file("bin/" + name, f.read(), 0o755)
    with open(GUEST_INIT, "rb") as f:
        cpio.file("init", f.read(), 0o755)
    with open(path, "wb") as f:
        f.write(gzip.compress(cpio.finish(), compresslevel=6))
    return names


# --------------------------------------------------------------------------
# deterministic data
# --------------------------------------------------------------------------

def guest_pattern(nbytes):
    """The bytes guest-init.sh's gen_pattern writes (awk there, Python here)."""
    lines = []
    for i in range((nbytes + 63) // 64):
        a = (i * 2654435761) % 1000000007
        b = (i * i * 31 + 7) % 999999937
        c = (a * 40503 + b) % 1000000009
        d = (c + i * 97) % 1000000021
        e = (a + b + c + d) % 100000000
        lines.append(b"VG %07d %010d %010d %010d %010d %08d\n" % (i, a, b, c, d, e))
    return b"".join(lines)[:nbytes]


def host_pattern(seed, nbytes):
    out = bytearray()
    counter = 0
    while len(out) < nbytes:
        out += hashlib.sha256(b"%s-%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:nbytes])


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# vhost-user proxy: message trace, IOMMU shim for the reference, status probe
# --------------------------------------------------------------------------

VU_REQUESTS = {
    0: "NONE", 1: "GET_FEATURES", 2: "SET_FEATURES", 3: "SET_OWNER", 4: "RESET_OWNER",
    5: "SET_MEM_TABLE", 6: "SET_LOG_BASE", 7: "SET_LOG_FD", 8: "SET_VRING_NUM",
    9: "SET_VRING_ADDR", 10: "SET_VRING_BASE", 11: "GET_VRING_BASE", 12: "SET_VRING_KICK",
    13: "SET_VRING_CALL", 14: "SET_VRING_ERR", 15: "GET_PROTOCOL_FEATURES",
    16: "SET_PROTOCOL_FEATURES", 17: "GET_QUEUE_NUM", 18: "SET_VRING_ENABLE", 19: "SEND_RARP",
    20: "NET_SET_MTU", 21: "SET_BACKEND_REQ_FD", 22: "IOTLB_MSG", 23: "SET_VRING_ENDIAN",
    24: "GET_CONFIG", 25: "SET_CONFIG", 26: "CREATE_CRYPTO_SESSION", 27: "CLOSE_CRYPTO_SESSION",
    28: "POSTCOPY_ADVISE", 29: "POSTCOPY_LISTEN", 30: "POSTCOPY_END", 31: "GET_INFLIGHT_FD",
    32: "SET_INFLIGHT_FD", 33: "GPU_SET_SOCKET", 34: "RESET_DEVICE", 35: "VRING_KICK",
    36: "GET_MAX_MEM_SLOTS", 37: "ADD_MEM_REG", 38: "REM_MEM_REG", 39: "SET_STATUS",
    40: "GET_STATUS",
}
VU_BACKEND_REQUESTS = {1: "IOTLB_MSG", 2: "CONFIG_CHANGE_MSG", 3: "VRING_HOST_NOTIFIER_MSG",
                       4: "VRING_CALL", 5: "VRING_ERR"}
VIRTIO_FEATURES = {
    24: "NOTIFY_ON_EMPTY", 26: "LOG_ALL", 27: "ANY_LAYOUT", 28: "RING_INDIRECT_DESC", 29: "RING_EVENT_IDX",
    30: "PROTOCOL_FEATURES", 32: "VERSION_1", 33: "ACCESS_PLATFORM", 34: "RING_PACKED", 35: "IN_ORDER",
    36: "ORDER_PLATFORM", 37: "SR_IOV", 38: "NOTIFICATION_DATA", 39: "NOTIF_CONFIG_DATA", 40: "RING_RESET",
}
DEVICE_FEATURES = {
    "blk": {0: "BLK_BARRIER", 1: "BLK_SIZE_MAX", 2: "BLK_SEG_MAX", 4: "BLK_GEOMETRY", 5: "BLK_RO",
            6: "BLK_BLK_SIZE", 7: "BLK_SCSI", 9: "BLK_FLUSH", 10: "BLK_TOPOLOGY", 11: "BLK_CONFIG_WCE",
            12: "BLK_MQ", 13: "BLK_DISCARD", 14: "BLK_WRITE_ZEROES", 15: "BLK_LIFETIME",
            16: "BLK_SECURE_ERASE", 17: "BLK_ZONED"},
    "net": {0: "NET_CSUM", 1: "NET_GUEST_CSUM", 2: "NET_CTRL_GUEST_OFFLOADS", 3: "NET_MTU", 5: "NET_MAC",
            6: "NET_GSO", 7: "NET_GUEST_TSO4", 8: "NET_GUEST_TSO6", 9: "NET_GUEST_ECN", 10: "NET_GUEST_UFO",
            11: "NET_HOST_TSO4", 12: "NET_HOST_TSO6", 13: "NET_HOST_ECN", 14: "NET_HOST_UFO",
            15: "NET_MRG_RXBUF", 16: "NET_STATUS", 17: "NET_CTRL_VQ", 18: "NET_CTRL_RX", 19: "NET_CTRL_VLAN",
            20: "NET_CTRL_RX_EXTRA", 21: "NET_GUEST_ANNOUNCE", 22: "NET_MQ", 23: "NET_CTRL_MAC_ADDR",
            41: "NET_DEVICE_STATS", 52: "NET_VQ_NOTF_COAL", 53: "NET_NOTF_COAL", 54: "NET_GUEST_USO4",
            55: "NET_GUEST_USO6", 56: "NET_HOST_USO", 57: "NET_HASH_REPORT", 59: "NET_GUEST_HDRLEN",
            60: "NET_RSS", 61: "NET_RSC_EXT", 62: "NET_STANDBY", 63: "NET_SPEED_DUPLEX"},
}
VU_PROTOCOL_FEATURES = {
    0: "MQ", 1: "LOG_SHMFD", 2: "RARP", 3: "REPLY_ACK", 4: "NET_MTU", 5: "BACKEND_REQ",
    6: "CROSS_ENDIAN", 7: "CRYPTO_SESSION", 8: "PAGEFAULT", 9: "CONFIG", 10: "BACKEND_SEND_FD",
    11: "HOST_NOTIFIER", 12: "INFLIGHT_SHMFD", 13: "RESET_DEVICE", 14: "INBAND_NOTIFICATIONS",
    15: "CONFIGURE_MEM_SLOTS", 16: "STATUS", 17: "XEN_MMAP", 18: "SHARED_OBJECT", 19: "DEVICE_STATE",
}
STATUS_BITS = {1: "ACKNOWLEDGE", 2: "DRIVER", 4: "DRIVER_OK", 8: "FEATURES_OK", 64: "NEEDS_RESET", 128: "FAILED"}
IOTLB_TYPES = {1: "MISS", 2: "UPDATE", 3: "INVALIDATE", 4: "ACCESS_FAIL"}
IOTLB_PERMS = {0: "none", 1: "RO", 2: "WO", 3: "RW"}

FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8
F_ACCESS_PLATFORM = 33
PF_STATUS = 16


def bit_names(value, table):
    names = []
    for bit in range(64):
        if value >> bit & 1:
            names.append(table.get(bit, "bit%d" % bit))
    return ",".join(names)


def status_names(value):
    return "|".join(name for bit, name in sorted(STATUS_BITS.items()) if value & bit) or "0"


class VhostUserProxy:
    """Sits between QEMU (connects to `listen_path`) and the back-end (listens
    on `backend_path`), relays every message with its file descriptors, and
    writes each one decoded to `trace_path`. With `iommu_shim` it lets a
    back-end without VIRTIO_F_IOMMU_PLATFORM serve an iommu_platform=on device
    whose guest maps DMA 1:1 (iommu=pt); with `offer_status` it offers
    VHOST_USER_PROTOCOL_F_STATUS and answers SET_STATUS/GET_STATUS itself, to
    see what QEMU sends to a back-end that has it."""

    def __init__(self, listen_path, backend_path, trace_path, device, iommu_shim=False, offer_status=False):
        self.features_table = {**VIRTIO_FEATURES, **DEVICE_FEATURES.get(device, {})}
        self.listen_path = listen_path
        self.backend_path = backend_path
        self.trace = open(trace_path, "w", buffering=1)
        self.iommu_shim = iommu_shim
        self.offer_status = offer_status
        self.t0 = time.monotonic()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(listen_path)
        self.listener.listen(4)
        self.links = []            # [front-end socket, back-end socket, channel, connection number]
        self.stopping = False
        self.errors = []
        self.connections = 0
        self.regions = []          # (gpa, size, uaddr)
        self.iotlb = []            # (iova, size, uaddr, perm)
        self.status = 0
        self.summary = []          # (channel, direction, name, detail) in order
        self.thread = threading.Thread(target=self._run, name="vhost-user-proxy", daemon=True)
        self.thread.start()

    # ---- wire ----
    @staticmethod
    def _recv_exact(sock, n, fds):
        buf = b""
        while len(buf) < n:
            data, anc, _flags, _addr = sock.recvmsg(n - len(buf), socket.CMSG_SPACE(16 * 4), socket.MSG_CMSG_CLOEXEC)
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    arr = array.array("i")
                    arr.frombytes(cdata[: len(cdata) - len(cdata) % arr.itemsize])
                    fds.extend(arr)
            if not data:
                return None
            buf += data
        return buf

    def _recv(self, sock):
        fds = []
        header = self._recv_exact(sock, 12, fds)
        if header is None:
            for fd in fds:
                os.close(fd)
            return None
        request, flags, size = struct.unpack("<III", header)
        payload = self._recv_exact(sock, size, fds) if size else b""
        if payload is None:
            for fd in fds:
                os.close(fd)
            return None
        return request, flags, payload, fds

    @staticmethod
    def _send(sock, request, flags, payload, fds):
        data = struct.pack("<III", request, flags, len(payload)) + payload
        if fds:
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            sock.sendall(data)
        for fd in fds:
            os.close(fd)

    # ---- decoding ----
    def _decode(self, channel, request, flags, payload, fds):
        is_reply = bool(flags & FLAG_REPLY)
        try:
            if channel != "main":
                if request == 1 and len(payload) >= 26:
                    return self._iotlb_text(payload)
                if len(payload) == 8:
                    return "u64=%#x" % struct.unpack("<Q", payload)
                return "size=%d" % len(payload)
            if request in (1, 2) and len(payload) == 8:
                v, = struct.unpack("<Q", payload)
                return "%#x [%s]" % (v, bit_names(v, self.features_table))
            if request in (15, 16) and len(payload) == 8:
                v, = struct.unpack("<Q", payload)
                return "%#x [%s]" % (v, bit_names(v, VU_PROTOCOL_FEATURES))
            if request in (39, 40) and len(payload) == 8:
                v, = struct.unpack("<Q", payload)
                return "%#x [%s]" % (v, status_names(v))
            if request == 5 and len(payload) >= 8:
                n, = struct.unpack_from("<I", payload, 0)
                regions = []
                for i in range(n):
                    gpa, size, uaddr, off = struct.unpack_from("<QQQQ", payload, 8 + 32 * i)
                    regions.append("gpa=%#x size=%#x uaddr=%#x mmap_offset=%#x" % (gpa, size, uaddr, off))
                return "nregions=%d {%s}" % (n, "; ".join(regions))
            if request in (37, 38) and len(payload) >= 40:
                gpa, size, uaddr, off = struct.unpack_from("<QQQQ", payload, 8)
                return "gpa=%#x size=%#x uaddr=%#x mmap_offset=%#x" % (gpa, size, uaddr, off)
            if request in (8, 10, 11, 18) and len(payload) == 8:
                index, num = struct.unpack("<II", payload)
                return "index=%d num=%d" % (index, num)
            if request == 9 and len(payload) >= 40:
                index, vflags, desc, used, avail, logaddr = struct.unpack_from("<IIQQQQ", payload)
                return "index=%d flags=%#x desc=%#x used=%#x avail=%#x log=%#x" % (index, vflags, desc, used, avail, logaddr)
            if request in (12, 13, 14) and len(payload) == 8:
                v, = struct.unpack("<Q", payload)
                return "index=%d%s" % (v & 0xFF, " NOFD" if v & 0x100 else "")
            if request in (24, 25) and len(payload) >= 12:
                offset, size, cflags = struct.unpack_from("<III", payload)
                text = "offset=%d size=%d flags=%#x" % (offset, size, cflags)
                body = payload[12:12 + size]
                if is_reply and offset == 0 and len(body) >= 8:
                    text += " capacity=%d" % struct.unpack_from("<Q", body)
                if body and (is_reply or request == 25):
                    text += " bytes=%s" % body[:64].hex()
                return text
            if request == 22 and len(payload) >= 26:
                return self._iotlb_text(payload)
            if request in (31, 32) and len(payload) >= 20:
                mmap_size, mmap_offset, nq, qs = struct.unpack_from("<QQHH", payload)
                return "mmap_size=%d mmap_offset=%d num_queues=%d queue_size=%d" % (mmap_size, mmap_offset, nq, qs)
            if len(payload) == 8:
                return "u64=%#x" % struct.unpack("<Q", payload)
            if payload:
                return "size=%d" % len(payload)
        except struct.error:
            pass
        return ""

    @staticmethod
    def _iotlb_text(payload):
        iova, size, uaddr, perm, kind = struct.unpack_from("<QQQBB", payload)
        return "%s iova=%#x size=%#x uaddr=%#x perm=%s" % (IOTLB_TYPES.get(kind, str(kind)), iova, size, uaddr,
                                                           IOTLB_PERMS.get(perm, str(perm)))

    def _log(self, channel, direction, request, flags, payload, fds, note=""):
        names = VU_REQUESTS if channel == "main" else VU_BACKEND_REQUESTS
        name = names.get(request, "REQ%d" % request)
        detail = self._decode(channel, request, flags, payload, fds)
        kind = "reply" if flags & FLAG_REPLY else "request"
        flag_text = "%#x%s%s" % (flags, " REPLY" if flags & FLAG_REPLY else "", " NEED_REPLY" if flags & FLAG_NEED_REPLY else "")
        self.trace.write("%9.3f %-7s %s %-22s(%2d) %-7s flags=%s size=%d fds=%d %s%s\n" % (
            time.monotonic() - self.t0, channel, direction, name, request, kind, flag_text, len(payload), len(fds),
            detail, (" [proxy: %s]" % note) if note else ""))
        self.summary.append((channel, direction, name, kind, detail, note))

    # ---- shim helpers ----
    def _translate(self, iova):
        for gpa, size, uaddr in self.regions:
            if gpa <= iova < gpa + size:
                return uaddr + (iova - gpa)
        return None

    def _reply(self, sock, request, value):
        payload = struct.pack("<Q", value)
        self._log("main", "P>F", request, 0x1 | FLAG_REPLY, payload, [], "reply made by the proxy")
        self._send(sock, request, 0x1 | FLAG_REPLY, payload, [])

    # ---- message handling ----
    def _from_front_end(self, link, request, flags, payload, fds):
        """A request QEMU sent on the main channel. Returns what to forward, or None."""
        front, back = link[0], link[1]
        note = ""
        if request == 21 and fds:  # SET_BACKEND_REQ_FD: interpose on the back-end's channel too
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            qemu_end = socket.socket(fileno=fds[0])
            self.links.append([qemu_end, mine, "backend", link[3]])
            fds = [os.dup(theirs.fileno())]
            theirs.close()
            note = "backend channel interposed"
        if request == 5 and len(payload) >= 8:
            n, = struct.unpack_from("<I", payload, 0)
            self.regions = [struct.unpack_from("<QQQ", payload, 8 + 32 * i) for i in range(n)]
        elif request == 37 and len(payload) >= 40:
            self.regions.append(struct.unpack_from("<QQQ", payload, 8))
        elif request == 38 and len(payload) >= 40:
            gpa, = struct.unpack_from("<Q", payload, 8)
            self.regions = [r for r in self.regions if r[0] != gpa]
        if self.iommu_shim:
            if request == 2 and len(payload) == 8:
                v, = struct.unpack("<Q", payload)
                payload = struct.pack("<Q", v & ~(1 << F_ACCESS_PLATFORM))
                note = "iommu shim: forwarded as %#x (ACCESS_PLATFORM hidden from the back-end)" % (v & ~(1 << F_ACCESS_PLATFORM))
            elif request == 22:
                if len(payload) >= 26:
                    self.iotlb.append(struct.unpack_from("<QQQB", payload))
                self._log("main", "F>B", request, flags, payload, fds, "iommu shim: not forwarded")
                if flags & FLAG_NEED_REPLY:
                    self._reply(front, request, 0)
                for fd in fds:
                    os.close(fd)
                return None
            elif request == 9 and len(payload) >= 40:
                index, vflags, desc, used, avail, logaddr = struct.unpack_from("<IIQQQQ", payload)
                mapped = [self._translate(a) for a in (desc, used, avail)]
                if None in mapped:
                    self.errors.append("iommu shim: ring address outside guest memory: %#x %#x %#x" % (desc, used, avail))
                else:
                    payload = struct.pack("<IIQQQQ", index, vflags, mapped[0], mapped[1], mapped[2], logaddr) + payload[40:]
                    note = "iommu shim: forwarded with IOVA->HVA desc=%#x used=%#x avail=%#x (iommu=pt: IOVA==GPA)" % tuple(mapped)
        if self.offer_status:
            if request == 16 and len(payload) == 8:
                v, = struct.unpack("<Q", payload)
                payload = struct.pack("<Q", v & ~(1 << PF_STATUS))
                note = "forwarded as %#x (STATUS hidden from the back-end)" % (v & ~(1 << PF_STATUS))
            elif request in (39, 40):
                if request == 39 and len(payload) == 8:
                    self.status, = struct.unpack("<Q", payload)
                self._log("main", "F>B", request, flags, payload, fds, "not forwarded")
                if request == 40:
                    self._reply(front, request, self.status)
                elif flags & FLAG_NEED_REPLY:
                    self._reply(front, request, 0)
                for fd in fds:
                    os.close(fd)
                return None
        return request, flags, payload, fds, note

    def _from_back_end(self, link, request, flags, payload, fds):
        note = ""
        if link[2] == "main" and flags & FLAG_REPLY and len(payload) == 8:
            v, = struct.unpack("<Q", payload)
            if self.iommu_shim and request == 1:
                v |= 1 << F_ACCESS_PLATFORM
                payload = struct.pack("<Q", v)
                note = "iommu shim: QEMU sees %#x (ACCESS_PLATFORM added)" % v
            if self.offer_status and request == 15:
                v |= 1 << PF_STATUS
                payload = struct.pack("<Q", v)
                note = "QEMU sees %#x (STATUS offered by the proxy)" % v
        return request, flags, payload, fds, note

    def _run(self):
        try:
            while not self.stopping:
                socks = [self.listener] + [s for link in self.links for s in link[:2]]
                try:
                    readable, _, _ = select.select(socks, [], [], 0.2)
                except (OSError, ValueError):
                    if self.stopping:
                        return
                    raise
                for sock in readable:
                    if sock is self.listener:
                        conn, _ = self.listener.accept()
                        back = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        back.connect(self.backend_path)
                        self.connections += 1
                        self.links.append([conn, back, "main", self.connections])
                        self.trace.write("%9.3f connection %d from the front-end\n" % (time.monotonic() - self.t0, self.connections))
                        continue
                    link = next((l for l in self.links if sock in l[:2]), None)
                    if link is None:
                        continue
                    from_front = sock is link[0]
                    try:
                        msg = self._recv(sock)
                    except (ConnectionResetError, BrokenPipeError):
                        msg = None
                    if msg is None:
                        self.trace.write("%9.3f %s channel of connection %d closed by the %s\n" % (
                            time.monotonic() - self.t0, link[2], link[3], "front-end" if from_front else "back-end"))
                        for s in link[:2]:
                            s.close()
                        self.links.remove(link)
                        continue
                    request, flags, payload, fds = msg
                    original = payload
                    if from_front and link[2] == "main" and not flags & FLAG_REPLY:
                        out = self._from_front_end(link, request, flags, payload, fds)
                    elif not from_front:
                        out = self._from_back_end(link, request, flags, payload, fds)
                    else:
                        out = (request, flags, payload, fds, "")
                    if out is None:
                        continue
                    request, flags, payload, fds, note = out
                    # the trace shows what the sender sent; the note says what the proxy changed
                    self._log(link[2], "F>B" if from_front else "B>F", request, flags, original, fds, note)
                    try:
                        self._send(link[1] if from_front else link[0], request, flags, payload, fds)
                    except (ConnectionResetError, BrokenPipeError):
                        self.trace.write("%9.3f %s channel of connection %d: the %s is gone\n" % (
                            time.monotonic() - self.t0, link[2], link[3], "back-end" if from_front else "front-end"))
                        for s in link[:2]:
                            s.close()
                        self.links.remove(link)
        except Exception as exc:  # the proxy must never take the run down silently
            if not self.stopping:
                self.errors.append("proxy: %r" % exc)
                self.trace.write("proxy error: %r\n" % exc)
                for link in self.links:
                    for s in link[:2]:
                        try:
                            s.close()
                        except OSError:
                            pass

    def close(self):
        self.stopping = True
        self.thread.join(2)
        for link in self.links:
            for s in link[:2]:
                try:
                    s.close()
                except OSError:
                    pass
        self.listener.close()
        self.trace.close()


# --------------------------------------------------------------------------
# one guest run
# --------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, run, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed.append("%s: %s%s" % (run, name, (" (" + detail + ")") if detail else ""))
            log("FAIL %s: %s%s" % (run, name, (" (" + detail + ")") if detail else ""))
        return ok


class GuestRun:
    def __init__(self):
        self.results = {}
        self.console_path = None
        self.boot_host = None       # QEMU start -> VG-BOOT seen (host clock)
        self.boot_guest = None      # /proc/uptime when /init started
        self.end_host = None        # QEMU start -> VG-END seen
        self.total = None           # QEMU start -> QEMU exit
        self.qemu_rc = None
        self.timed_out = False
        self.ended = False
        self.backend_died = False
        self.incomplete = False
        self.oops = []              # console lines of kernel oopses and panics


class Console:
    """Parses a guest's serial console file as it grows into a GuestRun: VG-BOOT, VG-RESULT,
    VG-END, kernel oopses; `on_line(line, seconds since start)` sees every line."""

    def __init__(self, path, run, start, on_line=None):
        self.path = path
        self.run = run
        self.start = start
        self.on_line = on_line
        self.pending = b""
        self.offset = 0
        open(path, "wb").close()

    def consume(self):
        run = self.run
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").replace("\r", "")
            now = time.monotonic() - self.start
            m = re.search(r"VG-BOOT uptime=([0-9.]+)", line)
            if m and run.boot_host is None:
                run.boot_host = now
                run.boot_guest = float(m.group(1))
            m = re.search(r"VG-RESULT ([A-Za-z0-9_]+)=(.*)$", line)
            if m:
                run.results[m.group(1)] = m.group(2).strip()
            if re.search(r"Kernel panic|BUG: |general protection fault|Oops: |Call Trace:|WARNING: CPU", line) and len(run.oops) < 20:
                run.oops.append(line.strip())
            if "VG-END" in line and run.end_host is None:
                run.end_host = now
                run.ended = True
            if self.on_line is not None:
                self.on_line(line, now)


def run_qemu(argv, console_path, stderr_path, timeout, backend=None, on_tick=None, on_line=None):
    """Runs QEMU until it exits (the guest powers off) or `timeout` seconds pass,
    parsing the serial console file as it grows; `on_tick(seconds since start)`
    is called from this (the main) thread every 0.1 s, `on_line(line, seconds)` for
    every console line."""
    run = GuestRun()
    run.console_path = console_path
    start = time.monotonic()
    console = Console(console_path, run, start, on_line)
    proc = spawn(argv, stderr_path, stderr_path)
    backend_dead_at = None
    end_seen_at = None
    consume = console.consume

    try:
        while True:
            consume()
            if proc.poll() is not None:
                break
            now = time.monotonic()
            if on_tick is not None:
                on_tick(now - start)
            if now - start > timeout:
                run.timed_out = True
                break
            if run.ended:
                end_seen_at = end_seen_at or now
                if now - end_seen_at > 30:   # powered off but QEMU did not exit
                    run.timed_out = True
                    break
            if backend is not None and backend.poll() is not None and not run.ended:
                backend_dead_at = backend_dead_at or now
                if now - backend_dead_at > 5:
                    run.backend_died = True
                    break
            time.sleep(0.1)
    finally:
        run.qemu_rc = stop(proc)
        run.total = time.monotonic() - start
        try:
            consume()
        except OSError:
            pass
    return run


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------

class Context:
    def __init__(self, args, workdir, kernel, initrd):
        self.args = args
        self.workdir = workdir
        self.kernel = kernel
        self.initrd = initrd
        self.checks = Checks()
        self.summaries = []
        self.binary_usage = None

    def path(self, name):
        return os.path.join(self.workdir, name)


def qemu_base(ctx, variant, append):
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-user-config"]
    if variant == "iommu":
        argv += ["-machine", "q35,kernel-irqchip=split",
                 "-device", "intel-iommu,intremap=on,device-iotlb=on"]
    else:
        argv += ["-machine", ctx.args.machine]
    argv += ["-m", MEM, "-smp", "1",
             "-object", "memory-backend-memfd,id=mem,size=%s,share=on" % MEM,
             "-numa", "node,memdev=mem",
             "-kernel", ctx.kernel, "-initrd", ctx.initrd,
             "-append", append,
             "-no-reboot", "-nographic", "-monitor", "none"]
    return argv


def kernel_append(variant, params, iommu_pt):
    words = ["console=ttyS0", "quiet", "panic=-1"]
    if variant == "iommu":
        words.append("intel_iommu=on")
        if iommu_pt:
            words.append("iommu=pt")
        else:
            # Strict invalidation: QEMU 7.2's vhost IOTLB relays the guest's page invalidations
            # but not the global flush of the lazy (DMA-FQ) mode, after which the guest reuses
            # IOVAs the back-end still holds mapped (seen: an indirect table read through a
            # stale mapping). Every vhost-user back-end that caches IOTLB entries is exposed;
            # QEMU 8.0 registers the notifier by ATS state instead.
            words.append("iommu.strict=1")
    words += ["vg.%s=%s" % (k, v) for k, v in params.items()]
    if variant == "iommu":
        words.append("vg.iommu=1")
    return " ".join(words)


def wait_for_socket(path, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return True
        except FileNotFoundError:
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def backend_name(ctx):
    return "qemu-storage-daemon" if ctx.args.reference else "virtio-grant"


def start_blk_backend(ctx, tag, image, sock):
    if ctx.args.reference:
        argv = ["qemu-storage-daemon",
                "--blockdev", "driver=file,node-name=file0,filename=%s" % image,
                "--blockdev", "driver=raw,node-name=disk0,file=file0",
                "--export", "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=%s,writable=on" % sock]
    else:
        argv = [ctx.args.binary, "serve", "--device", "blk", "--image", image, "--socket", sock, "--verbose"]
    err = ctx.path(tag + ".backend.log")
    log("back-end: " + " ".join(argv))
    proc = spawn(argv, ctx.path(tag + ".backend.out"), err)
    if not wait_for_socket(sock, proc, 15):
        raise ScenarioFailure("the back-end's socket %s did not appear within 15 s (exit status %s)\n--- back-end stderr (last 60 lines) ---\n%s"
                              % (sock, proc.poll(), tail(err)))
    return proc, argv


class ScenarioFailure(Exception):
    pass


def maybe_proxy(ctx, tag, sock, variant, device):
    """Returns (socket QEMU connects to, proxy or None)."""
    shim = ctx.args.reference and variant == "iommu"
    if not (shim or ctx.args.trace or ctx.args.offer_status):
        return sock, None
    front = ctx.path(tag + ".proxy.sock")
    proxy = VhostUserProxy(front, sock, ctx.path("vhost-user-%s.trace" % tag), device, iommu_shim=shim,
                           offer_status=ctx.args.offer_status)
    log("vhost-user proxy%s: %s -> %s, trace %s" % (" with the iommu shim" if shim else "", front, sock,
                                                     ctx.path("vhost-user-%s.trace" % tag)))
    return front, proxy


def stop_backend(ctx, tag, proxy, backend):
    """Closes the proxy (printing its trace summary) and stops the back-end, which must exit cleanly."""
    if proxy is not None:
        proxy.close()
        print_trace_summary(ctx, tag, proxy)
    rc = stop(backend)
    if backend is not None:
        ctx.checks.check(tag, "back-end stopped cleanly on SIGTERM", rc in (0, -signal.SIGTERM), "exit status %s" % rc)


def report_failure_context(ctx, tag, run, backend_log):
    log("--- guest console, last 60 lines (%s) ---\n%s" % (run.console_path if run else "-", tail(run.console_path) if run else ""))
    log("--- back-end stderr, last 60 lines (%s) ---\n%s" % (backend_log, tail(backend_log)))
    log("--- qemu stderr, last 60 lines ---\n%s" % tail(ctx.path(tag + ".qemu.log")))


def common_run_checks(ctx, tag, run, backend_proc, proxy):
    c = ctx.checks
    c.check(tag, "guest booted (VG-BOOT on the console)", run.boot_host is not None)
    c.check(tag, "scenario finished (VG-END) before the timeout", run.ended and not run.timed_out,
            "timed out after %.0f s" % run.total if run.timed_out else "")
    c.check(tag, "QEMU exited by itself with status 0", run.qemu_rc == 0 and not run.timed_out,
            "killed after the timeout" if run.timed_out else "status %s" % run.qemu_rc)
    c.check(tag, "back-end alive during the run", not run.backend_died and backend_proc.poll() is None,
            "exit status %s" % backend_proc.poll())
    c.check(tag, "all modules loaded", not any(k == "insmod_failed" for k in run.results), run.results.get("insmod_failed", ""))
    c.check(tag, "no guest-side error", "error" not in run.results, run.results.get("error", ""))
    c.check(tag, "guest kernel did not oops or panic", not run.oops, " | ".join(run.oops[:3]))
    if proxy is not None:
        c.check(tag, "vhost-user proxy without errors", not proxy.errors, "; ".join(proxy.errors))
    return run.ended


def features_from_sysfs(text):
    """/sys/bus/virtio/devices/*/features: a string of '0'/'1', bit 0 first."""
    return {i for i, ch in enumerate(text or "") if ch == "1"}


def iommu_checks(ctx, tag, r, pt):
    c = ctx.checks
    c.check(tag, "DMAR active in the guest", r.get("dmar_enabled") == "1" and r.get("iommu_units", "none") not in ("", "none"),
            "dmar_enabled=%s iommu_units=%s" % (r.get("dmar_enabled"), r.get("iommu_units")))
    c.check(tag, "virtio device in an IOMMU group", r.get("iommu_group", "none") not in ("", "none"),
            "iommu_group=%s" % r.get("iommu_group"))
    domain = r.get("iommu_domain", "")
    if pt:
        c.check(tag, "IOMMU domain is identity (iommu=pt, for the reference shim)", domain == "identity", domain)
    else:
        c.check(tag, "IOMMU domain translates (DMA or DMA-FQ)", domain.startswith("DMA"), domain)
    c.check(tag, "ACCESS_PLATFORM negotiated", F_ACCESS_PLATFORM in features_from_sysfs(r.get("virtio_features")),
            r.get("virtio_features", ""))
    # QEMU itself may fault once on the firmware's (SeaBIOS') old ring when the Linux driver
    # resets the device with translation already on; only faults during the I/O count.
    try:
        during = int(r.get("dmar_faults")) - int(r.get("dmar_faults_at_start"))
    except (TypeError, ValueError):
        during = None
    c.check(tag, "no DMAR faults during the scenario", during == 0,
            "%s during, %s before the scenario started" % (during, r.get("dmar_faults_at_start")))


def blk_layout(pattern_mib):
    g1 = 0
    h = pattern_mib + 4
    h_len = 4
    g2 = h + h_len + 4
    sector = (g2 + 2) * 2048 + 7
    size_mib = g2 + 8
    return dict(g1=g1, h=h, h_len=h_len, g2=g2, sector=sector, tail=size_mib - 1, size_mib=size_mib)


def scenario_blk(ctx, variant):
    tag = "blk-" + variant
    args = ctx.args
    lay = blk_layout(args.pattern_mb)
    pattern = guest_pattern(args.pattern_mb * MIB)
    host_a = host_pattern(b"vg-host-region", lay["h_len"] * MIB)
    host_b = host_pattern(b"vg-host-tail", MIB)
    image = ctx.path(tag + ".img")
    with open(image, "wb") as f:
        f.truncate(lay["size_mib"] * MIB)
        f.seek(lay["h"] * MIB)
        f.write(host_a)
        f.seek(lay["tail"] * MIB)
        f.write(host_b)
    expected = bytearray(lay["size_mib"] * MIB)
    expected[lay["h"] * MIB:(lay["h"] + lay["h_len"]) * MIB] = host_a
    expected[lay["tail"] * MIB:] = host_b
    expected[lay["g1"] * MIB:lay["g1"] * MIB + len(pattern)] = pattern
    expected[lay["g2"] * MIB:(lay["g2"] + 1) * MIB] = pattern[:MIB]
    expected[lay["sector"] * 512:lay["sector"] * 512 + 512] = pattern[3584:4096]

    pt = args.reference and variant == "iommu"
    params = {"mode": "blk", "pattern_bytes": len(pattern), "g1_mib": lay["g1"], "h_mib": lay["h"],
              "h_len_mib": lay["h_len"], "g2_mib": lay["g2"], "sector": lay["sector"], "tail_mib": lay["tail"],
              "step_timeout": max(30, int(args.timeout) // 2)}
    run, backend_log = guest_with_blk_backend(ctx, tag, variant, image, params, pt)
    if run is None:
        return
    r = run.results
    c = ctx.checks
    c.check(tag, "blk scenario completed in the guest", r.get("blk_done") == "1")
    c.check(tag, "capacity (sectors) seen by the guest", r.get("vda_sectors") == str(lay["size_mib"] * MIB // 512),
            "guest %s, image %d" % (r.get("vda_sectors"), lay["size_mib"] * MIB // 512))
    c.check(tag, "device writable", r.get("vda_ro") == "0", "ro=%s" % r.get("vda_ro"))
    for key in ("host_read_rc", "tail_read_rc", "pattern_write_rc", "pattern_read_rc", "buffered_write_rc",
                "buffered_read_rc", "sector_write_rc", "sector_read_rc"):
        c.check(tag, key + "=0", r.get(key) == "0", "%s=%s %s" % (key, r.get(key), r.get(key.replace("_rc", "_stderr"), "")))
    c.check(tag, "guest read the host-written region", r.get("host_region_sha256") == sha256(host_a),
            "guest %s host %s" % (r.get("host_region_sha256"), sha256(host_a)))
    c.check(tag, "guest read the host-written last MiB", r.get("tail_sha256") == sha256(host_b))
    c.check(tag, "guest pattern generator agrees with the host's", r.get("pattern_sha256") == sha256(pattern),
            "guest %s host %s" % (r.get("pattern_sha256"), sha256(pattern)))
    c.check(tag, "O_DIRECT read-back checksum", r.get("readback_sha256") == sha256(pattern),
            "guest %s expected %s" % (r.get("readback_sha256"), sha256(pattern)))
    c.check(tag, "buffered write + fsync read-back checksum", r.get("buffered_readback_sha256") == sha256(pattern[:MIB]))
    c.check(tag, "single-sector read-back checksum", r.get("sector_sha256") == sha256(pattern[3584:4096]))
    c.check(tag, "no I/O errors in the guest's kernel log", r.get("io_errors") == "0", "io_errors=%s" % r.get("io_errors"))
    if variant == "iommu":
        iommu_checks(ctx, tag, r, pt)
    if variant == "packed" and not args.reference:
        try:
            with open(backend_log, errors="replace") as f:
                served = "started: packed" in f.read()
        except OSError:
            served = False
        c.check(tag, "the back-end served Linux's queue as a packed ring", served)
    with open(image, "rb") as f:
        actual = f.read()
    ok = actual == bytes(expected)
    detail = ""
    if not ok:
        if len(actual) != len(expected):
            detail = "image is %d bytes, expected %d" % (len(actual), len(expected))
        else:
            first = next(i for i in range(0, len(actual), 512) if actual[i:i + 512] != expected[i:i + 512])
            detail = "first differing sector %d (byte %d, MiB %d)" % (first // 512, first, first // MIB)
    c.check(tag, "image bytes on the host after the run", ok, detail)
    summary(ctx, tag, variant, run)


def guest_with_blk_backend(ctx, tag, variant, image, params, pt):
    """Starts the blk back-end (and proxy), runs the guest, stops everything;
    returns (GuestRun or None, back-end log path)."""
    args = ctx.args
    sock = ctx.path(tag + ".sock")
    backend_log = ctx.path(tag + ".backend.log")
    backend = proxy = run = None
    try:
        backend, _ = start_blk_backend(ctx, tag, image, sock)
        qemu_sock, proxy = maybe_proxy(ctx, tag, sock, variant, "blk")
        device = "vhost-user-blk-pci,chardev=vhost0,num-queues=1"
        if variant == "iommu":
            device += ",disable-legacy=on,iommu_platform=on,ats=on"
        if variant == "packed":
            # VIRTIO 1.2 §2.8: Linux's packed-ring driver against the back-end's packed ring.
            device += ",packed=on"
        argv = qemu_base(ctx, variant, kernel_append(variant, params, pt)) + [
            "-chardev", "socket,id=vhost0,path=%s" % qemu_sock,
            "-device", device,
            "-serial", "file:%s" % ctx.path(tag + ".console")]
        log("%s: %s" % (tag, " ".join(quote(a) for a in argv)))
        run = run_qemu(argv, ctx.path(tag + ".console"), ctx.path(tag + ".qemu.log"), args.timeout, backend)
        log("%s: boot %.1f s (host, QEMU start -> /init), guest uptime at /init %.2f s, scenario end %.1f s, QEMU exit %.1f s"
            % (tag, run.boot_host or -1, run.boot_guest or -1, run.end_host or -1, run.total))
        if not common_run_checks(ctx, tag, run, backend, proxy):
            run.incomplete = True
    except ScenarioFailure as exc:
        ctx.checks.check(tag, "set-up", False, str(exc))
    finally:
        stop_backend(ctx, tag, proxy, backend)
    if run is None or any(f.startswith(tag + ":") for f in ctx.checks.failed):
        report_failure_context(ctx, tag, run, backend_log)
    if run is not None and run.incomplete:
        summary(ctx, tag, variant, run)
        return None, backend_log   # the scenario's own checks would only repeat that it did not finish
    return run, backend_log


def summary(ctx, tag, variant, run):
    record = {"run": tag, "variant": variant, "backend": backend_name(ctx),
              "boot_seconds_host": round(run.boot_host, 2) if run.boot_host else None,
              "guest_uptime_at_init": run.boot_guest,
              "scenario_end_seconds": round(run.end_host, 2) if run.end_host else None,
              "qemu_seconds": round(run.total, 2),
              "ok": not any(f.startswith(tag + ":") for f in ctx.checks.failed)}
    ctx.summaries.append(record)
    print(json.dumps(record), flush=True)


def scenario_bench(ctx, variant):
    tag = "bench-" + variant
    args = ctx.args
    image = ctx.path(tag + ".img")
    with open(image, "wb") as f:   # written out, not sparse: the first write should not pay for allocation
        zeros = bytes(MIB)
        for _ in range(args.bench_mb + 1):
            f.write(zeros)
    pt = args.reference and variant == "iommu"
    params = {"mode": "bench", "bench_mb": args.bench_mb, "bench_runs": args.bench_runs,
              "step_timeout": max(30, int(args.timeout) - 30)}
    run, _ = guest_with_blk_backend(ctx, tag, variant, image, params, pt)
    if run is None:
        return
    r = run.results
    c = ctx.checks
    c.check(tag, "bench completed in the guest", r.get("bench_done") == "1")
    if variant == "iommu":
        iommu_checks(ctx, tag, r, pt)
    nbytes = args.bench_mb * MIB
    for i in range(1, args.bench_runs + 1):
        for op in ("write", "read"):
            key = "bench_%s_%d" % (op, i)
            ok = c.check(tag, key + " rc=0", r.get(key + "_rc") == "0", r.get(key + "_stderr", ""))
            try:
                seconds = float(r.get(key + "_seconds", "nan"))
            except ValueError:
                seconds = float("nan")
            if ok and seconds > 0:
                record = {"bench": "blk-dd", "backend": backend_name(ctx), "op": op, "bytes": nbytes,
                          "seconds": round(seconds, 6), "MBps": round(nbytes / seconds / 1e6, 2),
                          "MiBps": round(nbytes / seconds / MIB, 2), "block": MIB, "direct": True,
                          "variant": variant, "run": i}
                if pt:
                    record["note"] = "reference behind the iommu shim, guest iommu=pt"
                print(json.dumps(record), flush=True)
    summary(ctx, tag, variant, run)


def usage_text(ctx):
    if ctx.binary_usage is None:
        try:
            res = subprocess.run([ctx.args.binary], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
            ctx.binary_usage = (res.stdout + res.stderr).decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired):
            ctx.binary_usage = ""
    return ctx.binary_usage


def net_peer_supports_mac(ctx):
    text = usage_text(ctx)
    section = text.split("net-peer", 1)[1] if "net-peer" in text else ""
    section = re.split(r"\n  \S", section, maxsplit=1)[0]
    return "--mac" in section


def refuse_reference(ctx, tag, kind):
    """True (with a failed check) when --reference asks for a back-end QEMU does not ship."""
    if ctx.args.reference:
        ctx.checks.check(tag, "a reference back-end for vhost-user-" + kind, False,
                         "QEMU ships no vhost-user-%s back-end; run %s against virtio-grant (without --reference)" % (kind, kind))
    return ctx.args.reference


def start_serve(ctx, tag, device, sock, extra=()):
    """`virtio-grant serve --device DEVICE` on `sock`, its stdout and stderr in the work directory."""
    argv = [ctx.args.binary, "serve", "--device", device, "--socket", sock, "--verbose"] + list(extra)
    log("back-end: " + " ".join(argv))
    backend = spawn(argv, ctx.path(tag + ".backend.out"), ctx.path(tag + ".backend.log"))
    if not wait_for_socket(sock, backend, 15):
        raise ScenarioFailure("the back-end's socket did not appear within 15 s (exit status %s)" % backend.poll())
    return backend


def scenario_net(ctx, variant):
    tag = "net-" + variant
    args = ctx.args
    c = ctx.checks
    if refuse_reference(ctx, tag, "net"):
        return
    sock = ctx.path(tag + ".sock")
    backend_log = ctx.path(tag + ".backend.log")
    peer_out = ctx.path(tag + ".peer.out")
    peer_log = ctx.path(tag + ".peer.log")
    backend = peer = proxy = run = None
    try:
        backend = start_serve(ctx, tag, "net", sock)
        qemu_sock, proxy = maybe_proxy(ctx, tag, sock, variant, "net")
        device = "virtio-net-pci,netdev=net0,mac=%s,vectors=0" % NET_GUEST_MAC
        if variant == "iommu":
            device += ",disable-legacy=on,iommu_platform=on,ats=on"
        params = {"mode": "net", "ip": NET_GUEST_IP, "peer": NET_PEER_IP}
        qemu = qemu_base(ctx, variant, kernel_append(variant, params, False)) + [
            "-chardev", "socket,id=vhost1,path=%s" % qemu_sock,
            "-netdev", "vhost-user,id=net0,chardev=vhost1",
            "-device", device,
            "-serial", "file:%s" % ctx.path(tag + ".console")]
        log("%s: %s" % (tag, " ".join(quote(a) for a in qemu)))
        # QEMU first (it connects while it starts), then the peer as the second port
        peer_argv = [args.binary, "net-peer", "--socket", sock, "--ip", NET_PEER_IP]
        if net_peer_supports_mac(ctx):
            peer_argv += ["--mac", NET_PEER_MAC]
        else:
            log("note: this virtio-grant's net-peer has no --mac option; not passing --mac %s" % NET_PEER_MAC)
        peer_argv += ["--seconds", str(int(args.timeout))]

        def start_peer(elapsed):
            nonlocal peer
            if peer is None and elapsed >= 1.0:
                log("net-peer: " + " ".join(peer_argv))
                peer = spawn(peer_argv, peer_out, peer_log)

        run = run_qemu(qemu, ctx.path(tag + ".console"), ctx.path(tag + ".qemu.log"), args.timeout, backend,
                       on_tick=start_peer)
        log("%s: boot %.1f s (host), guest uptime at /init %.2f s, scenario end %.1f s, QEMU exit %.1f s"
            % (tag, run.boot_host or -1, run.boot_guest or -1, run.end_host or -1, run.total))
        if not common_run_checks(ctx, tag, run, backend, proxy):
            raise ScenarioFailure("the guest did not finish the net scenario")
        r = run.results
        c.check(tag, "net scenario completed in the guest", r.get("net_done") == "1")
        c.check(tag, "guest MAC", r.get("mac") == NET_GUEST_MAC, r.get("mac", ""))
        c.check(tag, "link up", r.get("link") == "up", "link=%s" % r.get("link"))
        try:
            received = int(r.get("ping_received", "0"))
        except ValueError:
            received = 0
        c.check(tag, "ping: at least 4 of 5 echo replies", received >= 4, "received %d; %s" % (received, r.get("ping_output", "")))
        if variant == "iommu":
            iommu_checks(ctx, tag, r, False)
    except ScenarioFailure as exc:
        c.check(tag, "set-up", False, str(exc))
    finally:
        peer_rc = stop(peer)
        stop_backend(ctx, tag, proxy, backend)
    if peer is not None:
        # net-peer prints {"event":"net-peer-ready"} when it is on the switch and its totals
        # ({"event":"net-peer",...}) only when its --seconds run out; it is usually stopped
        # before that, so the totals are checked only when they are there.
        events = {}
        for line in tail(peer_out, 50).splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                events[obj.get("event")] = obj
        c.check(tag, "net-peer joined the switch (net-peer-ready)", "net-peer-ready" in events,
                "exit status %s; stdout: %s" % (peer_rc, tail(peer_out, 5)))
        totals = events.get("net-peer")
        if totals is not None:
            c.check(tag, "net-peer's totals", "error" not in totals and int(totals.get("echo_replies", 0) or 0) >= 4,
                    json.dumps(totals))
    else:
        c.check(tag, "net-peer started", False)
    if run is None or any(f.startswith(tag + ":") for f in c.failed):
        report_failure_context(ctx, tag, run, backend_log)
        log("--- net-peer stdout/stderr ---\n%s\n%s" % (tail(peer_out), tail(peer_log)))
    if run is not None:
        summary(ctx, tag, variant, run)


def scenario_rng(ctx, variant):
    """virtio-rng: the guest's hw_random core picks virtio_rng.0 and reads RNG_BYTES from
    /dev/hwrng; the guest reports how many it got and how they spread, the back-end's session
    report how many chains it answered."""
    tag = "rng-" + variant
    args = ctx.args
    c = ctx.checks
    if refuse_reference(ctx, tag, "rng"):
        return
    sock = ctx.path(tag + ".sock")
    backend_log = ctx.path(tag + ".backend.log")
    backend_out = ctx.path(tag + ".backend.out")
    backend = proxy = run = None
    try:
        backend = start_serve(ctx, tag, "rng", sock)
        qemu_sock, proxy = maybe_proxy(ctx, tag, sock, variant, "rng")
        params = {"mode": "rng", "rng_bytes": RNG_BYTES, "step_timeout": max(20, int(args.timeout) // 3)}
        qemu = qemu_base(ctx, variant, kernel_append(variant, params, False)) + [
            "-chardev", "socket,id=vhost1,path=%s" % qemu_sock,
            "-device", "vhost-user-rng-pci,chardev=vhost1",
            "-serial", "file:%s" % ctx.path(tag + ".console")]
        log("%s: %s" % (tag, " ".join(quote(a) for a in qemu)))
        run = run_qemu(qemu, ctx.path(tag + ".console"), ctx.path(tag + ".qemu.log"), args.timeout, backend)
        log("%s: boot %.1f s (host), guest uptime at /init %.2f s, scenario end %.1f s, QEMU exit %.1f s"
            % (tag, run.boot_host or -1, run.boot_guest or -1, run.end_host or -1, run.total))
        if not common_run_checks(ctx, tag, run, backend, proxy):
            raise ScenarioFailure("the guest did not finish the rng scenario")
        r = run.results
        c.check(tag, "rng scenario completed in the guest", r.get("rng_done") == "1")
        c.check(tag, "the guest's hw_random core uses the virtio device", r.get("rng_current", "").startswith("virtio_rng"),
                "rng_current=%s, rng_available=%s" % (r.get("rng_current"), r.get("rng_available")))
        c.check(tag, "read from /dev/hwrng within the timeout", r.get("rng_rc") == "0", "rc=%s" % r.get("rng_rc"))
        c.check(tag, "%d bytes read" % RNG_BYTES, r.get("rng_read") == str(RNG_BYTES), "read %s" % r.get("rng_read"))
        # 64 KiB of uniform bytes: every one of the 256 values appears (the chance that one
        # is missing is about 256 * e^-256), about 256 times each, so zeros are not most.
        distinct = int(r.get("rng_distinct", "0") or 0)
        zeros = int(r.get("rng_zeros", str(RNG_BYTES)) or RNG_BYTES)
        c.check(tag, "the bytes take all 256 values", distinct == 256, "%d distinct values" % distinct)
        c.check(tag, "the bytes are not mostly zeros", zeros < RNG_BYTES // 64, "%d zero bytes" % zeros)
        # GHT-EMB-01: no CONFIG offered to a device without a configuration space, so QEMU
        # 7.2 has nothing to warn about ("...supports VHOST_USER_PROTOCOL_F_CONFIG but QEMU does not")
        warned = [l for l in tail(ctx.path(tag + ".qemu.log"), 200).splitlines() if "PROTOCOL_F_CONFIG" in l]
        c.check(tag, "QEMU does not warn about the protocol features offered", not warned, "; ".join(warned))
    except ScenarioFailure as exc:
        c.check(tag, "set-up", False, str(exc))
    finally:
        stop_backend(ctx, tag, proxy, backend)
    if backend is not None and run is not None and run.ended:
        # one JSON line per ended session: the guest's session answered at least the bytes read
        chains = 0
        for line in tail(backend_out, 200).splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("chains"), int):
                chains += obj["chains"]
        c.check(tag, "the back-end answered the guest's requests (session report)", chains > 0,
                "chains %d; stdout: %s" % (chains, tail(backend_out, 5)))
    if run is None or any(f.startswith(tag + ":") for f in c.failed):
        report_failure_context(ctx, tag, run, backend_log)
    if run is not None:
        summary(ctx, tag, variant, run)


# --------------------------------------------------------------------------
# vsock: the host programs of the scenario (Firecracker's hybrid-vsock layout)
# --------------------------------------------------------------------------

_vsock_base = None


def vsock_pattern(seed, nbytes):
    """The bytes vsock-peer.c sends: (i*7 + (i>>8) + seed) & 255."""
    global _vsock_base
    if _vsock_base is None or len(_vsock_base) < nbytes:
        _vsock_base = bytes(((i * 7) + (i >> 8)) & 255 for i in range(max(nbytes, VSOCK_BYTES)))
    return _vsock_base[:nbytes].translate(bytes((b + seed) & 255 for b in range(256)))


def recv_exact(sock, nbytes):
    chunks, got = [], 0
    while got < nbytes:
        chunk = sock.recv(min(nbytes - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class VsockHostPeer:
    """Host programs on the back-end's vsock sockets: listeners on UDS_5000 (exchanges the
    guest opens) and UDS_5001 (closes after VSOCK_MIDCLOSE_BYTES), and clients that reach the
    guest's port 6000 through UDS with CONNECT."""

    def __init__(self, uds):
        self.uds = uds
        self.lock = threading.Lock()
        self.guest_opened = {}      # seed -> "ok" or what went wrong
        self.host_opened = {}       # index -> "ok" or what went wrong
        self.midclose_read = None
        self.host_started = None
        self.host_finished = None
        self.threads = []
        self.listeners = []
        for port, handler in ((5000, self.exchange), (5001, self.close_early)):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind("%s_%d" % (uds, port))
            listener.listen(64)
            self.listeners.append(listener)
            self.spawn(self.accept_loop, listener, handler)

    def spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def accept_loop(self, listener, handler):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.spawn(handler, conn)

    def exchange(self, conn):
        seed = None
        try:
            conn.settimeout(90)
            seed, length = struct.unpack("<II", recv_exact(conn, 8))
            data = recv_exact(conn, length)
            verdict = "ok" if data == vsock_pattern(seed, length) else "bytes differ (%d received)" % len(data)
            if conn.recv(1) != b"":
                verdict = "no end of stream after %d bytes" % length
            conn.sendall(struct.pack("<II", zlib.crc32(data), length) + vsock_pattern(seed ^ 0xA5, length))
            conn.close()
        except (OSError, struct.error) as exc:
            verdict = "error %r" % exc
        with self.lock:
            self.guest_opened[seed] = verdict

    def close_early(self, conn):
        conn.settimeout(60)
        data = recv_exact(conn, 8 + VSOCK_MIDCLOSE_BYTES)
        conn.close()   # with the guest's bytes unread: the device's next send fails
        with self.lock:
            self.midclose_read = len(data)

    def connect_guest(self, port, deadline):
        """A socket connected to the guest's `port` (CONNECT, OK), retried while the guest is
        not listening yet (the device closes a refused attempt unanswered)."""
        last = "no attempt"
        while time.monotonic() < deadline:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(20)
            try:
                s.connect(self.uds)
                s.sendall(b"CONNECT %d\n" % port)
                line = b""
                while not line.endswith(b"\n"):
                    b = s.recv(1)
                    if not b:
                        break
                    line += b
                if line.startswith(b"OK "):
                    return s
                last = "answer %r" % line
            except OSError as exc:
                last = repr(exc)
            s.close()
            time.sleep(0.5)
        raise OSError("CONNECT %d: %s" % (port, last))

    def open_to_guest(self, index, midclose=False):
        seed = 100 + index
        try:
            s = self.connect_guest(6000, time.monotonic() + 60)
            s.settimeout(90)
            if midclose:
                s.sendall(struct.pack("<II", seed, VSOCK_BYTES) + vsock_pattern(seed, VSOCK_MIDCLOSE_BYTES))
                s.close()
                return
            sent = vsock_pattern(seed, VSOCK_BYTES)
            s.sendall(struct.pack("<II", seed, VSOCK_BYTES) + sent)
            s.shutdown(socket.SHUT_WR)
            crc, length = struct.unpack("<II", recv_exact(s, 8))
            data = recv_exact(s, length)
            if crc != zlib.crc32(sent):
                verdict = "crc guest %08x host %08x" % (crc, zlib.crc32(sent))
            elif length != VSOCK_BYTES or data != vsock_pattern(seed ^ 0xA5, VSOCK_BYTES):
                verdict = "reply differs (%d of %d bytes)" % (len(data), length)
            elif s.recv(1) != b"":
                verdict = "no end of stream"
            else:
                verdict = "ok"
            s.close()
        except (OSError, struct.error) as exc:
            verdict = "error %r" % exc
        with self.lock:
            self.host_opened[index] = verdict
            self.host_finished = time.monotonic()

    def start_host_side(self):
        self.host_started = time.monotonic()
        for i in range(VSOCK_CONNS):
            self.spawn(self.open_to_guest, i)
        self.spawn(self.open_to_guest, VSOCK_CONNS, True)

    def close(self):
        for listener in self.listeners:
            listener.close()
        for t in self.threads:
            t.join(timeout=5)


def scenario_vsock(ctx, variant):
    """virtio-vsock: the guest opens VSOCK_CONNS exchanges to a host program on UDS_5000 while
    host programs open as many to the guest's port 6000 through UDS, 1 MiB each way on each,
    every byte checked on both sides; a host program on UDS_5001 and one host client close
    mid-stream. The back-end's session report is checked too."""
    tag = "vsock-" + variant
    args = ctx.args
    c = ctx.checks
    if refuse_reference(ctx, tag, "vsock"):
        return
    sock = ctx.path(tag + ".sock")
    uds = ctx.path(tag + ".vsock")
    backend_log = ctx.path(tag + ".backend.log")
    backend_out = ctx.path(tag + ".backend.out")
    backend = proxy = run = peer = None
    started = time.monotonic()
    try:
        backend = start_serve(ctx, tag, "vsock", sock, ["--guest-cid", str(VSOCK_GUEST_CID), "--vsock-socket", uds])
        peer = VsockHostPeer(uds)
        qemu_sock, proxy = maybe_proxy(ctx, tag, sock, variant, "vsock")
        params = {"mode": "vsock", "vsock_conns": VSOCK_CONNS, "vsock_bytes": VSOCK_BYTES,
                  "step_timeout": max(30, int(args.timeout) * 2 // 3)}
        qemu = qemu_base(ctx, variant, kernel_append(variant, params, False)) + [
            "-chardev", "socket,id=vhost1,path=%s" % qemu_sock,
            "-device", "vhost-user-vsock-pci,chardev=vhost1",
            "-serial", "file:%s" % ctx.path(tag + ".console")]
        log("%s: %s" % (tag, " ".join(quote(a) for a in qemu)))
        console = ctx.path(tag + ".console")

        def on_tick(_seconds):
            # The host side starts once the guest listens on port 6000.
            if peer.host_started is None:
                try:
                    with open(console, "rb") as f:
                        if b"vsock_listening=1" in f.read():
                            peer.start_host_side()
                except OSError:
                    pass

        run = run_qemu(qemu, console, ctx.path(tag + ".qemu.log"), args.timeout, backend, on_tick)
        log("%s: boot %.1f s (host), guest uptime at /init %.2f s, scenario end %.1f s, QEMU exit %.1f s"
            % (tag, run.boot_host or -1, run.boot_guest or -1, run.end_host or -1, run.total))
        if not common_run_checks(ctx, tag, run, backend, proxy):
            raise ScenarioFailure("the guest did not finish the vsock scenario")
        r = run.results
        c.check(tag, "vsock scenario completed in the guest", r.get("vsock_done") == "1")
        c.check(tag, "the guest's virtio vsock transport bound the device", r.get("vsock_devices") == "1",
                "vsock_devices=%s" % r.get("vsock_devices"))
        # guest to host: the guest's verdicts (CRC of what the host received, every reply byte)
        c.check(tag, "%d guest-opened exchanges completed in the guest" % VSOCK_CONNS,
                r.get("vsock_g2h_done") == "ok %d failed 0" % VSOCK_CONNS,
                "%s; %s" % (r.get("vsock_g2h_done"), [v for k, v in sorted(r.items()) if k.startswith("vsock_g2h_") and not v.startswith("ok")][:4]))
        with peer.lock:
            guest_opened = dict(peer.guest_opened)
            host_opened = dict(peer.host_opened)
            midclose_read = peer.midclose_read
        good = sorted(k for k, v in guest_opened.items() if v == "ok")
        c.check(tag, "the host program received every byte of the %d guest-opened exchanges" % VSOCK_CONNS,
                good == list(range(1, VSOCK_CONNS + 1)), "%s" % {k: v for k, v in guest_opened.items() if v != "ok"} or guest_opened)
        # host to guest
        good = sorted(k for k, v in host_opened.items() if v == "ok")
        c.check(tag, "%d host-opened exchanges (CONNECT 6000) completed, every byte checked" % VSOCK_CONNS,
                good == list(range(VSOCK_CONNS)), "%s" % ({k: v for k, v in host_opened.items() if v != "ok"} or host_opened))
        c.check(tag, "the guest served them all and saw the host client that closed early end short",
                r.get("vsock_h2g_done") == "ok %d short 1 failed 0" % VSOCK_CONNS,
                "%s; %s" % (r.get("vsock_h2g_done"), [v for k, v in sorted(r.items()) if k.startswith("vsock_h2g_") and not v.startswith("ok")][:4]))
        # a host program closing mid-stream
        c.check(tag, "the host program on port 5001 read %d bytes and closed" % VSOCK_MIDCLOSE_BYTES,
                midclose_read == 8 + VSOCK_MIDCLOSE_BYTES, "read %s" % midclose_read)
        c.check(tag, "the guest's sender saw the connection reset when that program closed",
                r.get("vsock_midclose_guest") in ("reset", "epipe"), "vsock_midclose_guest=%s" % r.get("vsock_midclose_guest"))
        seconds = float(r.get("vsock_g2h_seconds", "0") or 0)
        if peer.host_started is not None and peer.host_finished is not None:
            host_seconds = peer.host_finished - peer.host_started
            log("%s: guest-opened: %d x %d KiB each way in %.2f s (%s MB/s, both ways); host-opened: %.2f s (%.2f MB/s)"
                % (tag, VSOCK_CONNS, VSOCK_BYTES // 1024, seconds, r.get("vsock_g2h_mbps"), host_seconds,
                   2.0 * VSOCK_CONNS * VSOCK_BYTES / host_seconds / 1e6))
            print(json.dumps({"scenario": tag, "connections": VSOCK_CONNS, "bytes_each_way": VSOCK_BYTES,
                              "guest_opened_s": seconds, "guest_opened_mbps": float(r.get("vsock_g2h_mbps", "0") or 0),
                              "host_opened_s": round(host_seconds, 3),
                              "host_opened_mbps": round(2.0 * VSOCK_CONNS * VSOCK_BYTES / host_seconds / 1e6, 2)}), flush=True)
    except ScenarioFailure as exc:
        c.check(tag, "set-up", False, str(exc))
    finally:
        if peer is not None:
            peer.close()
        stop_backend(ctx, tag, proxy, backend)
    if backend is not None and run is not None and run.ended:
        chains, broken = 0, 0
        for line in tail(backend_out, 200).splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("chains"), int):
                chains += obj["chains"]
                broken += obj.get("broken_queues", 0)
        c.check(tag, "the back-end served the guest's packets, no queue broken (session report)", chains > 0 and broken == 0,
                "chains %d, broken queues %d; stdout: %s" % (chains, broken, tail(backend_out, 5)))
    log("%s: scenario took %.1f s" % (tag, time.monotonic() - started))
    if run is None or any(f.startswith(tag + ":") for f in c.failed):
        report_failure_context(ctx, tag, run, backend_log)
    if run is not None:
        summary(ctx, tag, variant, run)


def print_trace_summary(ctx, tag, proxy):
    """A compact message sequence on stderr: consecutive duplicates folded."""
    seq = []
    for channel, direction, name, kind, detail, note in proxy.summary:
        if kind == "reply":
            continue
        item = ("%s:" % channel if channel != "main" else "") + name
        if name in ("SET_STATUS", "SET_FEATURES", "SET_PROTOCOL_FEATURES", "SET_VRING_ENABLE", "GET_CONFIG", "IOTLB_MSG"):
            item += "(" + detail.split(" [")[0] + ")"
        if seq and seq[-1][0] == item:
            seq[-1][1] += 1
        else:
            seq.append([item, 1])
    limit = 120
    text = " ".join(i if n == 1 else "%s x%d" % (i, n) for i, n in seq[:limit])
    if len(seq) > limit:
        counts = {}
        for channel, direction, name, kind, detail, note in proxy.summary:
            if kind != "reply":
                key = ("%s:" % channel if channel != "main" else "") + name
                counts[key] = counts.get(key, 0) + 1
        text += " ... (%d more; requests by name: %s)" % (
            len(seq) - limit, ", ".join("%s %d" % kv for kv in sorted(counts.items(), key=lambda kv: -kv[1])))
    log("%s vhost-user requests (%d messages, trace in %s): %s" % (
        tag, len(proxy.summary), os.path.basename(proxy.trace.name), text))


def quote(arg):
    return arg if re.fullmatch(r"[A-Za-z0-9_,.:/=+@%-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


SCENARIOS = {
    "blk": [(scenario_blk, "default")],
    "blk-iommu": [(scenario_blk, "iommu")],
    "blk-packed": [(scenario_blk, "packed")],
    "bench": [(scenario_bench, "default"), (scenario_bench, "iommu")],
    "bench-default": [(scenario_bench, "default")],
    "bench-iommu": [(scenario_bench, "iommu")],
    "net": [(scenario_net, "default")],
    "net-iommu": [(scenario_net, "iommu")],
    "rng": [(scenario_rng, "default")],
    "vsock": [(scenario_vsock, "default")],
}

# The restart and migration scenarios live in modules of their own that use this one's helpers
# (run as a script, this module is __main__: they must find it under its own name).
sys.modules.setdefault("interop", sys.modules[__name__])
import interop_restart  # noqa: E402
import interop_migrate  # noqa: E402
SCENARIOS.update(interop_restart.SCENARIOS)
SCENARIOS.update(interop_migrate.SCENARIOS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--scenario", default="all",
                        help="blk, blk-iommu, bench (both variants), bench-default, bench-iommu, net, net-iommu, rng, vsock, "
                             "blk-restart, blk-restart-packed, blk-restart-iommu, blk-restart-qsd, net-restart, migrate, "
                             "migrate-qsd or all; several separated by commas (default all: without the restart and "
                             "migration scenarios)")
    parser.add_argument("--reference", action="store_true",
                        help="use QEMU's qemu-storage-daemon as the back-end instead of virtio-grant")
    parser.add_argument("--binary", default=os.path.join(REPO, ".build", "release", "virtio-grant"),
                        help="the virtio-grant binary (default: .build/release/virtio-grant in the repo)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per QEMU run (default 240)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (images, consoles, logs, traces)")
    parser.add_argument("--bench-mb", type=int, default=64, help="MiB written then read by the bench (default 64)")
    parser.add_argument("--bench-runs", type=int, default=3, help="write+read rounds per bench run (default 3)")
    parser.add_argument("--pattern-mb", type=int, default=4, help="MiB of the blk pattern (default 4)")
    parser.add_argument("--machine", default="pc", help="QEMU machine of the default variant (default pc)")
    parser.add_argument("--trace", action="store_true",
                        help="put a vhost-user proxy between QEMU and the back-end and log every message")
    parser.add_argument("--offer-status", action="store_true",
                        help="(implies a proxy) offer VHOST_USER_PROTOCOL_F_STATUS to QEMU and answer "
                             "SET_STATUS/GET_STATUS in the proxy, to log the status values QEMU sends")
    parser.add_argument("--kills", type=int, default=20, help="blk-restart*: back-end kills per guest boot (default 20)")
    parser.add_argument("--net-kills", type=int, default=3, help="net-restart: back-end kills (default 3)")
    parser.add_argument("--seed", default=None, help="seed of the kill points and migration moment (default: random, printed)")
    parser.add_argument("--blk-backend", default=None,
                        help="blk-restart* and migrate: the back-end command, {image} and {socket} filled in (default: "
                             "virtio-grant serve --device blk --direct, or qemu-storage-daemon with --reference)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = str(int.from_bytes(os.urandom(4), "little"))
    if not (0 <= args.kills <= 200 and 0 <= args.net_kills <= 50):
        parser.error("--kills 0..200, --net-kills 0..50")
    if not (1 <= args.pattern_mb <= 64 and 1 <= args.bench_mb <= 2048 and 1 <= args.bench_runs <= 20 and args.timeout > 0):
        parser.error("--pattern-mb 1..64, --bench-mb 1..2048, --bench-runs 1..20, --timeout > 0")

    names = []
    for item in args.scenario.split(","):
        item = item.strip()
        if item == "all":
            names += ["blk", "blk-packed", "blk-iommu", "bench"] + ([] if args.reference else ["net", "rng", "vsock"])
            if args.reference:
                log("note: net, rng and vsock skipped with --reference (QEMU ships no vhost-user-net, -rng or -vsock back-end)")
        elif item in SCENARIOS:
            names.append(item)
        else:
            parser.error("unknown scenario %r" % item)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    workdir = None
    ctx = None
    started = time.monotonic()
    try:
        ensure_tools(need_qsd=args.reference or any(n.endswith("-qsd") for n in names))
        if not args.reference:
            args.binary = os.path.abspath(args.binary)
            if not os.access(args.binary, os.X_OK):
                raise EnvironmentProblem("no virtio-grant binary at %s (build it: swift build -c release; or pass "
                                         "--binary PATH, or --reference for QEMU's back-end)" % args.binary)
        kernel, moddir, version = find_kernel()
        if not os.access(kernel, os.R_OK):
            raise EnvironmentProblem("cannot read %s" % kernel)
        workdir = tempfile.mkdtemp(prefix="vg-interop-")
        initrd = os.path.join(workdir, "initramfs.cpio.gz")
        modules = build_initramfs(initrd, busybox_path(), moddir)
        log("kernel %s, modules %s, initramfs %s (%d KiB), work dir %s"
            % (kernel, " ".join(modules), initrd, os.path.getsize(initrd) // 1024, workdir))
        ctx = Context(args, workdir, kernel, initrd)
        for name in names:
            for function, variant in SCENARIOS[name]:
                try:
                    function(ctx, variant)
                except (EnvironmentProblem, SystemExit, KeyboardInterrupt):
                    raise
                except Exception:  # a bug in this script or an unexpected condition: fail the run, go on
                    import traceback
                    ctx.checks.check("%s-%s" % (function.__name__.replace("scenario_", ""), variant),
                                     "ran without an internal error", False, traceback.format_exc())
                finally:
                    stop_all()
    except EnvironmentProblem as exc:
        log("environment: %s" % exc)
        return 2
    except (OSError, subprocess.SubprocessError) as exc:
        log("environment: %r" % exc)
        return 2
    except (SystemExit, KeyboardInterrupt) as exc:
        log("interrupted (%s): stopping every child process and removing the work directory" % (
            "signal %d" % (exc.code - 128) if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code > 128
            else type(exc).__name__))
        raise
    finally:
        stop_all()
        if workdir is not None:
            if args.keep:
                log("work directory kept: " + workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    failed = ctx.checks.failed
    log("%d checks passed, %d failed, %.0f s" % (ctx.checks.passed, len(failed), time.monotonic() - started))
    for line in failed:
        log("  failed: " + line)
    print("interop: %d passed, %d failed" % (ctx.checks.passed, len(failed)), flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
