#!/bin/sh
# /init of the interop guest (busybox ash, PID 1 inside the initramfs that
# Tests/Interop/interop.py builds). Everything it reports goes to the serial
# console as lines the host parses:
#   VG-BOOT uptime=SECONDS      init started (kernel boot time, guest clock)
#   VG-RESULT key=value         one result; value runs to the end of the line
#   VG-END                      the scenario finished; poweroff follows
# The scenario and its parameters come from the kernel command line
# (vg.mode=blk|net|bench|rng|vsock|stress|netping and vg.*=...). The modules to load, in dependency
# order, are listed one per line in /etc/vg-modules (written by the host).

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp
mount -t tmpfs -o size=300m tmpfs /tmp

echo "VG-BOOT uptime=$(cut -d' ' -f1 /proc/uptime)"

say() { echo "VG-RESULT $*"; }

finish() {
    echo "VG-END"
    # no sync after a stress run: a request stuck in a dead device would hang it (all its I/O is O_DIRECT)
    [ "$NOSYNC" = 1 ] || sync
    poweroff -f
    sleep 10
    echo o > /proc/sysrq-trigger
}

# param NAME DEFAULT: value of vg.NAME= on the kernel command line
param() {
    _v=$2
    for _w in $(cat /proc/cmdline); do
        case "$_w" in "vg.$1="*) _v=${_w#vg.$1=} ;; esac
    done
    echo "$_v"
}

# wall clock with microseconds (busybox date has no %N; adjtimex reads it)
now() {
    _t=$(adjtimex 2>/dev/null | awk '/tv_sec/ {s=$2} /tv_usec/ {u=$2} END {if (s != "") printf "%d.%06d", s, u}')
    if [ -z "$_t" ]; then _t=$(cut -d' ' -f1 /proc/uptime); fi
    echo "$_t"
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.6f", b - a}'; }

# wait_for PATH SECONDS
wait_for() {
    _n=0
    while [ ! -e "$1" ]; do
        _n=$((_n + 1))
        [ $_n -gt $(($2 * 10)) ] && return 1
        usleep 100000
    done
    return 0
}

STEP_TIMEOUT=$(param step_timeout 120)

# run_dd LABEL dd-arguments...: dd bounded in time; reports rc and stderr on failure
run_dd() {
    _label=$1
    shift
    timeout "$STEP_TIMEOUT" dd "$@" 2>/tmp/dd.err
    _rc=$?
    say "${_label}_rc=$_rc"
    if [ $_rc -ne 0 ]; then
        say "${_label}_stderr=$(tr '\n' ' ' </tmp/dd.err)"
    fi
    return $_rc
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# The deterministic pattern (interop.py computes the same bytes): 64-byte lines
#   "VG %07d %010d %010d %010d %010d %08d\n"
# every value below 2^31 and every product below 2^53, so awk's doubles are exact.
gen_pattern() {
    awk -v bytes="$1" 'BEGIN {
        n = int((bytes + 63) / 64)
        for (i = 0; i < n; i++) {
            a = (i * 2654435761) % 1000000007
            b = (i * i * 31 + 7) % 999999937
            c = (a * 40503 + b) % 1000000009
            d = (c + i * 97) % 1000000021
            e = (a + b + c + d) % 100000000
            printf "VG %07d %010d %010d %010d %010d %08d\n", i, a, b, c, d, e
        }
    }' | head -c "$1"
}

load_modules() {
    for _m in $(cat /etc/vg-modules); do
        if ! insmod "/lib/modules/$_m.ko" 2>/tmp/insmod.err; then
            grep -q 'File exists' /tmp/insmod.err || say "insmod_failed=$_m $(tr '\n' ' ' </tmp/insmod.err)"
        fi
    done
    say "modules=$(cut -d' ' -f1 /proc/modules | tr '\n' ',')"
}

# iommu_info SYSFS-DEVICE (e.g. /sys/block/vda/device): DMAR state and the
# IOMMU group and domain type of the virtio device's PCI function.
iommu_info() {
    _units=$(ls /sys/class/iommu 2>/dev/null | tr '\n' ',')
    say "iommu_units=${_units:-none}"
    if dmesg | grep -q 'DMAR: IOMMU enabled'; then say "dmar_enabled=1"; else say "dmar_enabled=0"; fi
    if dmesg | grep -q 'Enabled IRQ remapping'; then say "irq_remapping=1"; else say "irq_remapping=0"; fi
    _pci=$(readlink -f "$1/..")
    say "pci_device=$(basename "$_pci")"
    if [ -e "$_pci/iommu_group" ]; then
        _grp=$(basename "$(readlink -f "$_pci/iommu_group")")
        say "iommu_group=$_grp"
        say "iommu_domain=$(cat /sys/kernel/iommu_groups/$_grp/type 2>/dev/null)"
    else
        say "iommu_group=none"
    fi
    if [ -e "$_pci/iommu" ]; then say "iommu_unit=$(basename "$(readlink -f "$_pci/iommu")")"; fi
    usleep 300000
    say "dmar_faults_at_start=$(dmar_fault_count)"
    dmesg | grep -E 'DMAR: \[DMA (Read|Write)' | head -3 | while read -r _l; do say "dmar_fault_before_start=$_l"; done
}

dmar_fault_count() {
    dmesg | grep -c -E 'DMAR: \[DMA (Read|Write)|DMAR: \[INTR-REMAP'
}
iommu_faults() {
    say "dmar_faults=$(dmar_fault_count)"
}

scenario_blk() {
    if ! wait_for /dev/vda 30; then
        say "error=no /dev/vda after 30 s"
        return
    fi
    say "vda_sectors=$(cat /sys/block/vda/size)"
    say "vda_ro=$(cat /sys/block/vda/ro)"
    say "vda_logical_block_size=$(cat /sys/block/vda/queue/logical_block_size)"
    say "vda_write_cache=$(cat /sys/block/vda/queue/write_cache)"
    say "virtio_features=$(cat /sys/block/vda/device/features)"
    [ "$(param iommu 0)" = 1 ] && iommu_info /sys/block/vda/device

    P=$(param pattern_bytes 4194304)
    G1=$(param g1_mib 0)
    H=$(param h_mib 16)
    HMB=$(param h_len_mib 4)
    G2=$(param g2_mib 24)
    SEC=$(param sector 57351)
    TAIL=$(param tail_mib 31)

    # 1. a region the host filled before boot, O_DIRECT read
    run_dd host_read if=/dev/vda of=/tmp/h bs=1M skip="$H" count="$HMB" iflag=direct &&
        say "host_region_sha256=$(sha /tmp/h)"
    rm -f /tmp/h
    # the image's last MiB (host-filled too): the capacity is right at the end
    run_dd tail_read if=/dev/vda of=/tmp/t bs=1M skip="$TAIL" count=1 iflag=direct &&
        say "tail_sha256=$(sha /tmp/t)"
    rm -f /tmp/t

    # 2. the deterministic pattern, O_DIRECT write, O_DIRECT read back
    gen_pattern "$P" >/tmp/pat
    say "pattern_sha256=$(sha /tmp/pat)"
    run_dd pattern_write if=/tmp/pat of=/dev/vda bs=1M seek="$G1" oflag=direct conv=notrunc
    run_dd pattern_read if=/dev/vda of=/tmp/rb bs=1M skip="$G1" count=$((P / 1048576)) iflag=direct &&
        say "readback_sha256=$(sha /tmp/rb)"
    rm -f /tmp/rb

    # 3. buffered write of the pattern's first MiB + fsync, caches dropped, O_DIRECT read back
    run_dd buffered_write if=/tmp/pat of=/dev/vda bs=1M count=1 seek="$G2" conv=fsync
    sync
    echo 3 >/proc/sys/vm/drop_caches
    run_dd buffered_read if=/dev/vda of=/tmp/rb2 bs=1M skip="$G2" count=1 iflag=direct &&
        say "buffered_readback_sha256=$(sha /tmp/rb2)"
    rm -f /tmp/rb2

    # 4. one 512-byte sector (pattern bytes 3584..4095) at an odd sector, O_DIRECT
    dd if=/tmp/pat of=/tmp/sec bs=512 skip=7 count=1 2>/dev/null
    run_dd sector_write if=/tmp/sec of=/dev/vda bs=512 seek="$SEC" count=1 oflag=direct
    run_dd sector_read if=/dev/vda of=/tmp/sec2 bs=512 skip="$SEC" count=1 iflag=direct &&
        say "sector_sha256=$(sha /tmp/sec2)"
    rm -f /tmp/sec /tmp/sec2 /tmp/pat

    [ "$(param iommu 0)" = 1 ] && iommu_faults
    say "io_errors=$(dmesg | grep -c -E 'I/O error|blk_update_request|virtio_blk.*error')"
    say "blk_done=1"
}

scenario_bench() {
    if ! wait_for /dev/vda 30; then
        say "error=no /dev/vda after 30 s"
        return
    fi
    say "vda_sectors=$(cat /sys/block/vda/size)"
    say "virtio_features=$(cat /sys/block/vda/device/features)"
    [ "$(param iommu 0)" = 1 ] && iommu_info /sys/block/vda/device
    MB=$(param bench_mb 64)
    RUNS=$(param bench_runs 1)
    say "bench_bytes=$((MB * 1048576))"
    r=1
    while [ $r -le "$RUNS" ]; do
        t0=$(now)
        run_dd "bench_write_$r" if=/dev/zero of=/dev/vda bs=1M count="$MB" oflag=direct
        t1=$(now)
        say "bench_write_${r}_seconds=$(elapsed "$t0" "$t1")"
        t0=$(now)
        run_dd "bench_read_$r" if=/dev/vda of=/dev/null bs=1M count="$MB" iflag=direct
        t1=$(now)
        say "bench_read_${r}_seconds=$(elapsed "$t0" "$t1")"
        r=$((r + 1))
    done
    [ "$(param iommu 0)" = 1 ] && iommu_faults
    say "bench_done=1"
}

scenario_net() {
    if ! wait_for /sys/class/net/eth0 30; then
        say "error=no eth0 after 30 s"
        say "link=absent"
        say "ping_received=0"
        return
    fi
    say "mac=$(cat /sys/class/net/eth0/address)"
    say "virtio_features=$(cat /sys/class/net/eth0/device/features 2>/dev/null)"
    [ "$(param iommu 0)" = 1 ] && iommu_info /sys/class/net/eth0/device
    ip link set lo up
    ip link set eth0 up
    ip addr add "$(param ip 10.0.2.15/24)" dev eth0
    _n=0
    while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $_n -lt 100 ]; do
        usleep 100000
        _n=$((_n + 1))
    done
    say "link=$(cat /sys/class/net/eth0/operstate)"
    _peer=$(param peer 10.0.2.2)
    timeout 60 ping -c 5 -W 2 "$_peer" >/tmp/ping.out 2>&1
    _rx=$(sed -n 's/.* \([0-9][0-9]*\) packets received.*/\1/p' /tmp/ping.out)
    say "ping_output=$(tr '\n' '|' </tmp/ping.out)"
    say "ping_received=${_rx:-0}"
    say "neighbours=$(ip neigh show dev eth0 | tr '\n' '|')"
    say "eth0_stats=rx_packets:$(cat /sys/class/net/eth0/statistics/rx_packets),tx_packets:$(cat /sys/class/net/eth0/statistics/tx_packets)"
    [ "$(param iommu 0)" = 1 ] && iommu_faults
    say "net_done=1"
}

scenario_rng() {
    # rng-core is built into the Debian kernel; virtio_rng registers virtio_rng.0 with it and
    # the core makes it current (the only source), then /dev/hwrng reads from the device.
    _n=0
    while ! grep -q virtio_rng /sys/class/misc/hw_random/rng_current 2>/dev/null && [ $_n -lt 100 ]; do
        usleep 100000
        _n=$((_n + 1))
    done
    say "rng_available=$(cat /sys/class/misc/hw_random/rng_available 2>/dev/null)"
    say "rng_current=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
    _bytes=$(param rng_bytes 65536)
    timeout "$STEP_TIMEOUT" head -c "$_bytes" /dev/hwrng >/tmp/rng 2>/tmp/rng.err
    say "rng_rc=$?"
    [ -s /tmp/rng.err ] && say "rng_stderr=$(tr '\n' ' ' </tmp/rng.err)"
    say "rng_read=$(wc -c </tmp/rng)"
    say "rng_sha256=$(sha /tmp/rng)"
    say "rng_head=$(head -c 16 /tmp/rng | od -An -tx1 | tr -d ' \n')"
    od -An -v -tx1 /tmp/rng | tr -s ' ' '\n' | grep . >/tmp/rng.hex
    say "rng_distinct=$(sort -u /tmp/rng.hex | wc -l)"
    say "rng_zeros=$(grep -c '^00$' /tmp/rng.hex)"
    rm -f /tmp/rng /tmp/rng.hex
    say "rng_done=1"
}

scenario_vsock() {
    # /bin/vsock-peer (Tests/Interop/vsock-peer.c, built by interop.py): the guest serves port
    # 6000 for the host's connections (CONNECT 6000 on the host's socket), connects to host
    # ports 5000 (vsock_conns exchanges of vsock_bytes each way) and 5001 (a host program that
    # closes after 64 KiB), all at once.
    if [ ! -x /bin/vsock-peer ]; then say "error=no /bin/vsock-peer in the initramfs"; return; fi
    _conns=$(param vsock_conns 16)
    _bytes=$(param vsock_bytes 1048576)
    say "vsock_devices=$(ls /sys/bus/virtio/drivers/vmw_vsock_virtio_transport 2>/dev/null | grep -c virtio)"
    vsock-peer serve 6000 $((_conns + 1)) "$STEP_TIMEOUT" &
    _server=$!
    vsock-peer midclose 2 5001 4194304 &
    _mid=$!
    vsock-peer connect 2 5000 "$_conns" "$_bytes"
    wait $_mid
    wait $_server
    say "vsock_done=1"
}

# kernel_log_checks PATTERN: the guest kernel's complaints about its virtio devices, counted
kernel_log_checks() {
    say "kernel_io_errors=$(dmesg | grep -c -E 'I/O error|blk_update_request|virtio_blk.*error')"
    say "kernel_not_a_head=$(dmesg | grep -c 'is not a head')"
    say "kernel_hung_task=$(dmesg | grep -c -E 'blocked for more than|hung_task')"
    say "kernel_virtio_reset=$(dmesg | grep -c -E 'virtio.*(reset|broken|NEEDS_RESET)|TX timeout|NETDEV WATCHDOG|transmit queue .* timed out')"
    _i=0
    dmesg | grep -E "$1" | head -6 | while read -r _l; do say "kernel_log_$_i=$_l"; _i=$((_i + 1)); done
}

scenario_stress() {
    # /bin/blk-stress (Tests/Interop/blk-stress.c): concurrent O_DIRECT writers and readers,
    # every block verified, until the host writes VGSTOP!! into the control block. The host
    # kills and restarts the back-end (or migrates the guest) meanwhile.
    NOSYNC=1
    if [ ! -x /bin/blk-stress ]; then say "error=no /bin/blk-stress in the initramfs"; return; fi
    if ! wait_for /dev/vda 30; then say "error=no /dev/vda after 30 s"; return; fi
    say "vda_sectors=$(cat /sys/block/vda/size)"
    say "virtio_features=$(cat /sys/block/vda/device/features)"
    [ "$(param iommu 0)" = 1 ] && iommu_info /sys/block/vda/device
    echo 10 >/proc/sys/kernel/hung_task_timeout_secs 2>/dev/null
    _max=$(param stress_max 200)
    blk-stress /dev/vda "$(param writers 4)" "$(param readers 2)" "$(param area 256)" "$(param control 2048)" "$_max" 1 &
    # the tool marks its end with a file: threads stuck on a dead device cannot be waited for
    _n=0
    while [ ! -e /tmp/stress.done ] && [ $_n -lt $(((_max + 30) * 5)) ]; do
        usleep 200000
        _n=$((_n + 1))
    done
    [ -e /tmp/stress.done ] && say "stress_tool_ended=1" || say "stress_tool_ended=0"
    [ "$(param iommu 0)" = 1 ] && iommu_faults
    kernel_log_checks 'I/O error|not a head|blocked for more|virtio|vda'
    say "stress_mode_done=1"
}

scenario_netping() {
    # pings to the peer every 0.2 s for vg.ping_seconds, each line echoed as VG-PING (the host
    # times them against its kills of the back-end); the kernel log afterwards
    if ! wait_for /sys/class/net/eth0 30; then say "error=no eth0 after 30 s"; return; fi
    say "mac=$(cat /sys/class/net/eth0/address)"
    ip link set lo up
    ip link set eth0 up
    ip addr add "$(param ip 10.0.2.15/24)" dev eth0
    _n=0
    while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $_n -lt 100 ]; do
        usleep 100000
        _n=$((_n + 1))
    done
    say "link=$(cat /sys/class/net/eth0/operstate)"
    say "net_ready=1"
    ping -i 0.2 -W 2 -w "$(param ping_seconds 40)" "$(param peer 10.0.2.2)" 2>&1 | while read -r _l; do echo "VG-PING $_l"; done
    say "eth0_stats=rx_packets:$(cat /sys/class/net/eth0/statistics/rx_packets),tx_packets:$(cat /sys/class/net/eth0/statistics/tx_packets)"
    say "eth0_carrier_changes=$(cat /sys/class/net/eth0/carrier_changes 2>/dev/null)"
    kernel_log_checks 'virtio|eth0|NETDEV'
    say "netping_done=1"
}

say "kernel=$(uname -r)"
load_modules
MODE=$(param mode none)
say "mode=$MODE"
case "$MODE" in
blk) scenario_blk ;;
bench) scenario_bench ;;
net) scenario_net ;;
rng) scenario_rng ;;
vsock) scenario_vsock ;;
stress) scenario_stress ;;
netping) scenario_netping ;;
shell) exec sh ;;
*) say "error=unknown vg.mode '$MODE'" ;;
esac
say "guest_uptime=$(cut -d' ' -f1 /proc/uptime)"
finish
