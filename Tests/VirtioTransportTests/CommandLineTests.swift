import Testing

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// Runs `virtio-grant arguments...` to completion; its exit and what it wrote to standard error.
func runVirtioGrant(_ arguments: [String]) throws -> (ChildProcess.ExitStatus?, String) {
    let pipe = try Pipe()
    let child = try ChildProcess.spawn(path: try ChildProcess.executableDirectory + "/virtio-grant", arguments: arguments,
                                       fileDescriptors: [(child: 1, parent: pipe.writeEnd), (child: 2, parent: pipe.writeEnd)])
    pipe.writeEnd.close()
    var reader = LineReader(pipe.readEnd)
    var text = ""
    while let line = try? reader.readLine(timeoutMilliseconds: 10_000) { text += line + "\n" }
    return (try child.wait(timeoutMilliseconds: 10_000), text)
}

@Suite("Command line", .tags(.transport))
struct CommandLineTests {
    static let mistakes: [([String], String)] = [
        ([], "no command given"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["bench"], "bench needs a workload"),
        (["bench", "ring", "--descs", "3"], "--descs takes integers in 1...2"),
        (["bench", "ring", "--batch", "0"], "--batch takes integers in 1...128"),
        (["bench", "ring", "--seconds", "-1"], "--seconds must be a number of seconds"),
        (["bench", "ring", "--translator", "magic"], "--translator must be one of identity, grant, both"),
        (["bench", "ring", "--runs"], "option --runs needs a value"),
        (["bench", "xproc", "--queue-size", "100"], "--queue-size must be a power of 2"),
        (["serve"], "serve needs --socket PATH"),
        (["serve", "--socket", String(repeating: "s", count: 200)], "--socket path longer than a unix socket address allows"),
        (["serve", "--socket", "/tmp/x", "--device", "disk"], "--device must be one of checksum, checksum-late, echo, blk, net, rng, vsock"),
        (["serve", "--socket", "/tmp/x", "--device", "vsock"], "serve --device vsock needs --vsock-socket PATH"),
        (["serve", "--socket", "/tmp/x", "--guest-cid", "3"], "--guest-cid and --vsock-socket are for --device vsock"),
        (["serve", "--socket", "/tmp/x", "--vsock-socket", "/tmp/v"], "--guest-cid and --vsock-socket are for --device vsock"),
        (["serve", "--socket", "/tmp/x", "--device", "vsock", "--vsock-socket", "/tmp/v", "--guest-cid", "2"], "--guest-cid must be an integer in 3...4294967294"),
        (["serve", "--socket", "/tmp/x", "--device", "vsock", "--vsock-socket", String(repeating: "v", count: 100)], "--vsock-socket path too long"),
        (["serve", "--socket", "/tmp/x", "--device", "blk"], "serve --device blk needs --image FILE"),
        (["serve", "--socket", "/tmp/x", "--image", "/tmp/disk.img"], "--image is for --device blk"),
        (["serve", "--socket", "/tmp/x", "--device", "blk", "--image", "/tmp/d", "--aio", "posix"], "--aio must be one of auto, io_uring, sync"),
        (["serve", "--socket", "/tmp/x", "--direct"], "--aio and --direct are for --device blk"),
        (["serve", "--socket", "/tmp/x", "--mapping", "1:1"], "--mapping needs --vfs"),
        (["serve", "--socket", "/tmp/x", "--vfs", "0"], "--vfs must be an integer in 1...64"),
        (["serve", "--socket", "/tmp/x", "--vfs", "2", "--mapping", "2:3"], "--mapping must be one of 1:1, 1:n, n:m"),
        (["serve", "--socket", "/tmp/x", "--vfs", "2", "--weights", "1,0"], "--weights takes integers in 1...1000"),
        (["serve", "--socket", "/tmp/x", "--vfs", "2", "--device", "blk", "--image", "/tmp/d"], "--vfs with --device blk needs --window-sectors N"),
        (["serve", "--socket", "/tmp/x", "--vfs", "2", "--window-sectors", "8"], "--window-sectors is for --device blk"),
        (["bench", "sched", "--service-us", "0"], "--service-us must be an integer in 1...10000"),
        (["demo", "--vfs", "17"], "--vfs must be an integer in 1...16"),
        (["net-peer"], "net-peer needs --socket PATH"),
        (["net-peer", "--socket", "/tmp/x", "--ip", "10.0.2"], "--ip must be an IPv4 address"),
        (["net-peer", "--socket", "/tmp/x", "--ip", "10.0.2.300"], "--ip must be an IPv4 address"),
        (["guest"], "guest needs --socket PATH"),
        (["guest", "--socket", "/tmp/x", "--queue-size", "3"], "--queue-size must be a power of 2 for a split ring"),
        (["guest", "--socket", "/tmp/x", "--ring", "circular"], "--ring must be one of"),
        (["demo", "--ring", "packd"], "--ring must be one of"),
        (["guest", "--socket", "/tmp/x", "--outstanding", "999"], "--outstanding must be an integer in 1...256"),
        (["guest", "--socket", "/tmp/x", "--payload", "0"], "--payload must be an integer"),
        (["guest", "--socket", "/tmp/x", "--bogus"], "unknown option --bogus"),
        (["demo", "--guests", "0"], "--guests must be an integer in 1...16"),
        (["demo", "--seconds", "soon"], "--seconds must be a number of seconds"),
        (["demo", "extra"], "unexpected argument 'extra'"),
        (["conformance", "--run-tests", "--test-output", "/tmp/x"], "give either --test-output FILE or --run-tests, not both"),
        (["conformance", "--chek"], "unknown option --chek"),
        (["conformance", "Spec"], "conformance takes no positional argument"),
    ]

    @Test("Every command-line mistake is a usage message and exit status 2, never a crash", arguments: mistakes)
    func mistake(_ arguments: [String], _ message: String) throws {
        let (status, text) = try runVirtioGrant(arguments)
        #expect(status == .exited(2), "\(arguments): \(text)")
        #expect(text.hasPrefix("virtio-grant: ") && text.contains(message), "\(text)")
        #expect(text.contains("usage: virtio-grant <command>"))
    }

    @Test("A blk back-end whose image cannot be opened says so as JSON and exits 1, before listening")
    func missingImage() throws {
        let socket = "/tmp/vg-noimage-\(getpid()).sock"
        let (status, text) = try runVirtioGrant(["serve", "--device", "blk", "--image", "/nonexistent/\(getpid()).img", "--socket", socket])
        #expect(status == .exited(1))
        #expect(text.contains("\"event\":\"error\"") && text.contains("cannot open image"), "\(text)")
        #expect(access(socket, F_OK) != 0, "it never listened")
    }

    @Test("A guest that cannot reach its back-end prints the typed error as JSON and exits 3")
    func guestWithoutBackEnd() throws {
        let (status, text) = try runVirtioGrant(["guest", "--socket", "/nonexistent/\(getpid()).sock", "--seconds", "0.1"])
        #expect(status == .exited(3))
        #expect(text.contains("\"ok\":false") && text.contains("\"error\":\"socket: "), "\(text)")
    }
}
