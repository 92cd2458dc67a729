import VirtioSystem
import VirtioTransport

let usage = """
    usage: virtio-grant <command> [options]

    commands:
      demo                 a back-end process and guest processes over vhost-user, grant mode
        --seconds S        how long each guest streams (default 3)
        --guests N         guest processes (default 2); guest 1 presents an ungranted handle
        --ring R           split (default) or packed virtqueues
        --json             JSON lines (one per guest, then the verdict) instead of the summary
        --vfs N            instead: the guests share N virtual functions of one echo device
                           (n:m, deficit round robin); guest 1 greedy, the others polite
        --restarts N       instead: the back-end (its device completing out of order) is killed
                           with SIGKILL and restarted N times mid-stream; the guests reconnect
                           and verify that every reply came back once and right
      serve                a back-end process: listens on a unix socket, one session per connection
        --socket PATH      where to listen (required)
        --device D         checksum (default; reply: FNV-1a-64 + echo), checksum-late (the same
                           replies from a thread of the device, every second request held
                           --hold-ms N ms, default 2: completions out of order),
                           echo, blk (virtio-blk),
                           net (virtio-net; every connection a port of one switch, with an
                           address of its own that it alone may send from), rng
                           (virtio-rng: random bytes from getrandom) or vsock (virtio-vsock)
        --image FILE       blk: the disk image (its size, in 512-byte sectors, is the capacity)
        --read-only        blk: offer RO; writes fail with IOERR
        --aio A            blk: io_uring (many requests in the kernel per queue, where the kernel
                           allows it), sync (one request at a time, on the queue thread), or auto
                           (default: io_uring with --direct, sync through the page cache)
        --direct           blk: open the image O_DIRECT (past the page cache; guest buffers not
                           512-byte aligned go through an aligned bounce buffer)
        --vsock-socket P   vsock (required): host programs connect to P and write "CONNECT
                           <port>\n"; the guest's connections to host port N go to P_N
        --guest-cid N      vsock: the guest's CID (default 3)
        --queues N         queues per device (default 1; blk: request queues, MQ above 1)
        --max-queue-size N blk: the largest queue a front-end may ask for (default 32768)
        --poll US          the queue workers poll the rings, kicks suppressed, and sleep after
                           US microseconds without work (default: sleep on every kick)
        --worker-threads N the queues of every session share N threads (default: a thread per queue)
        --worker-cpus L    pin the queue threads to the CPUs in L (comma-separated, round robin)
        --sessions N       exit after N sessions ended (default: until SIGINT/SIGTERM)
        --verbose          log sessions, violations and faults on standard error
        --vfs N            the guests share N virtual functions of the device in turns; with
          --mapping M      1:1, 1:n or n:m (default n:m), --policy P rr, drr (default) or
                           drr-bytes, --quantum Q (default 32), --slice-ms T (default 2),
                           --cutoff-ms T (default 100)
          --weights W,...  the k-th connection on --socket weighs W_k (default 1)
          --window-sectors N  blk: the k-th guest owns sectors [(k-1)N, kN)
          --guest NAME=SOCKET[,window=FIRST:COUNT][,weight=W]
                           repeatable, instead of --socket: a guest the operator names, on a
                           socket of its own; its window (blk, in sectors) and weight (default
                           1) follow the name, not the order of connections, and come back when
                           it reconnects. A newer connection on the socket is the guest: an older
                           one still open is served no more (its queues break). The socket's
                           file permissions decide who may be that guest.
      guest                a front-end process: connects, negotiates, runs a workload, verifies
        --socket PATH      the back-end (required)
        --workload W       stream (default; checksum device), throughput or latency (echo device)
        --seconds S        stream and throughput duration (default 2)
        --requests N       latency round trips (default 10000)
        --payload B        largest (stream) or fixed request size (default 16384 / 4096)
        --domain D         this guest's grant domain (default 1)
        --mode M           grants (default) or gpa (guest-physical addresses)
        --ring R           split (default) or packed
        --queue-size N     (default 256; packed rings need not be a power of 2)
        --outstanding N    requests in flight (default 64)
        --bad-handle       halfway, put a never-granted handle in a chain, expect the refusal, reset
        --reconnect S      a back-end that goes away is reconnected to at --socket within S seconds
                           (setup replayed, requests in flight completed once; a line
                           {"event":"connected"} comes before the summary); default: it ends the run
      net-peer             a second guest on a net back-end: answers ARP and ping for --ip
        --socket PATH      the back-end (required)
        --ip A.B.C.D       its IPv4 address (default 10.0.2.2)
        --seconds S        how long it answers (default 30)
        --expect-echoes N  exit 1 unless at least N echo requests were answered (default 0)
        --mode M           grants (default) or gpa
      bench ring           workload W1: one thread plays driver and device of a queue
        --descs 1,2        descriptors per chain (default 1,2)
        --batch 1,32       chains per publish (default 1,32)
        --translator T     identity, grant or both (default both)
        --ring R           split, packed or both (default both)
        --seconds S        CPU-seconds per run (default 1)
        --runs R           runs per variant; the median is reported (default 5)
        --reference PATH   also run the C reference binary built from shared/bench/ring_ref.c
      bench grants         grant+endAccess, map+unmap, IOTLB hit translation, 4 KiB copies
        --seconds S        CPU-seconds per run (default 1)
        --runs R           runs per measurement; the median is reported (default 5)
      bench sched          scheduler: model update, obtain/finish, decision, context switch,
                           Jain's index (weights 1:1:1 and 1:2:4), greedy guest's effect on p99
        --seconds S --runs N --service-us U
      bench xproc          a spawned guest against a back-end in this process, echo device, event index
        --seconds S        throughput run length (default 2)
        --runs R           throughput runs; the median is reported (default 3)
        --payload B        request size (default 4096)
        --queue-size N     (default 256; all of it in flight)
        --requests N       latency round trips (default 20000)
        --mode M           grants, gpa or both (default both)
        --poll US          the back-end's worker polls (idle budget US microseconds)
        --idle-seconds S   the idle measure: worker CPU per second connected and idle (default 2)
      check                a black-box conformance checker of any vhost-user back-end (Spec/checker.md)
        --backend-cmd C    a command line with {sock}: a fresh back-end process per case
        --socket PATH      or a back-end already listening on PATH
        --device D         blk, net or auto (default: from the offered features)
        --output-dir DIR   write DIR/matrix.md and DIR/results.jsonl (DIR must exist)
        --timeout-per-case MS  the bound on each wait of a case (default 2000)
        --case FILTER      only the cases whose name contains FILTER
        --name NAME        the implementation's name in the matrix
        --replay FILE      run a reproducer file of fuzz again (its back-end command unless given)
      fuzz                 a mutation fuzzer of any vhost-user back-end (Spec/checker.md)
        --backend-cmd C    a command line with {sock}: a fresh back-end process per run
        --socket PATH      or a back-end already listening on PATH
        --device D         blk (default) or net
        --runs N --seconds S   bounds (default 100 runs)
        --seed N           the generator's seed (default 1): the same seed, the same cases
        --output-dir DIR   save a reproducer file per finding there
      conformance          the conformance matrix: Spec/ requirements, the tests naming them, a run's results
        --test-output FILE read the results from this `swift test` output
        --run-tests        run `swift test` for the results instead
        --check            compare with Spec/CONFORMANCE.md instead of writing it (exit 1 on drift)
        --root DIR         the package root (default .)
        --output FILE      where the matrix goes (default ROOT/Spec/CONFORMANCE.md)
                           exit 1 on any problem: an untested MUST, an unexplained SHOULD, a test
                           naming an unknown ID, a failed test
    """

func fail(_ message: String) -> Never {
    var stderr = StandardStream.error
    print("virtio-grant: \(message)\n\n\(usage)", to: &stderr)
    CurrentProcess.exit(2)
}

let arguments = CommandLine.arguments.dropFirst()
do throws(UsageError) {
    switch arguments.first {
    case "demo":
        CurrentProcess.exit(try DemoCommand(arguments.dropFirst()).run())
    case "serve":
        CurrentProcess.exit(try ServeCommand(arguments.dropFirst()).run())
    case "guest":
        CurrentProcess.exit(try GuestCommand(arguments.dropFirst()).run())
    case "net-peer":
        CurrentProcess.exit(try NetPeerCommand(arguments.dropFirst()).run())
    case "bench":
        CurrentProcess.exit(try BenchCommand.run(arguments.dropFirst()))
    case "conformance":
        CurrentProcess.exit(try ConformanceCommand(arguments.dropFirst()).run())
    case "check":
        CurrentProcess.exit(try CheckCommand(arguments.dropFirst()).run())
    case "fuzz":
        CurrentProcess.exit(try FuzzCommand(arguments.dropFirst()).run())
    case "check-faulty-backend":
        CurrentProcess.exit(try CheckFaultyBackEndCommand.run(arguments.dropFirst()))
    case "help", "--help", "-h":
        print(usage)
    case nil:
        throw UsageError(description: "no command given")
    case let other?:
        throw UsageError(description: "unknown command '\(other)'")
    }
} catch {
    fail(error.description)
}
