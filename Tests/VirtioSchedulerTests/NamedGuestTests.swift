import Testing
import VirtioSystem
import VirtioDevices
import VirtioScheduler
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// `virtio-grant serve` with named guests, each on a socket of its own (`--guest`).
@Suite("Guests named by the operator, not by connection order", .serialized)
struct NamedGuestTests {
    static let mistakes: [([String], String)] = [
        (["serve", "--guest", "a=/tmp/a"], "--guest needs --vfs"),
        (["serve", "--vfs", "1", "--guest", "a"], "expected NAME=SOCKET"),
        (["serve", "--vfs", "1", "--guest", "a b=/tmp/a"], "a name is 1 to 32 letters"),
        (["serve", "--vfs", "1", "--guest", "a=/tmp/a", "--guest", "a=/tmp/b"], "--guest name 'a' given twice"),
        (["serve", "--vfs", "1", "--guest", "a=/tmp/a", "--guest", "b=/tmp/a"], "--guest socket '/tmp/a' given twice"),
        (["serve", "--vfs", "1", "--socket", "/tmp/x", "--guest", "a=/tmp/a"], "--socket and --guest do not mix"),
        (["serve", "--vfs", "1", "--guest", "a=/tmp/a,weight=0"], "weight is an integer in 1...1000"),
        (["serve", "--vfs", "1", "--guest", "a=/tmp/a,weight=2,weight=3"], "weight given twice"),
        (["serve", "--vfs", "1", "--guest", "a=/tmp/a,colour=red"], "unknown key 'colour'"),
        (["serve", "--vfs", "1", "--guest", "a=/tmp/a,window=0:8"], "window is for --device blk"),
        (["serve", "--vfs", "1", "--guest", "a=/tmp/a", "--weights", "2"], "give each guest its weight"),
        (["serve", "--vfs", "1", "--device", "blk", "--image", "/tmp/d", "--guest", "a=/tmp/a"], "needs window=FIRST:COUNT"),
        (["serve", "--vfs", "1", "--device", "blk", "--image", "/tmp/d", "--guest", "a=/tmp/a,window=5:0"], "COUNT at least 1"),
        (["serve", "--vfs", "1", "--device", "blk", "--image", "/tmp/d", "--guest", "a=/tmp/a,window=0:8",
          "--guest", "b=/tmp/b,window=4:8"], "--guest b: its window overlaps a's"),
    ]

    @Test("GHT-ISO-04: every --guest mistake is a usage message and exit status 2", arguments: mistakes)
    func mistake(_ arguments: [String], _ message: String) throws {
        let program = try SpawnedProgram(arguments, standardError: true)
        let text = program.remainingOutput()
        #expect(try program.finish() == .exited(2), "\(arguments): \(text)")
        #expect(text.contains(message) && text.contains("usage: virtio-grant <command>"), "\(text)")
    }

    @Test("GHT-ISO-04: a blk guest's window follows its name: the guest connecting first on its own socket gets its own window, and gets it back when it reconnects")
    func windowsFollowNames() throws {
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let image = "/tmp/vg-named-\(tag).img", socketA = "/tmp/vg-named-a-\(tag).sock", socketB = "/tmp/vg-named-b-\(tag).sock"
        let fd = open(image, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o600)
        #expect(ftruncate(fd, 2048 * 512) == 0)
        close(fd)
        defer { unlink(image) }
        let serve = try SpawnedProgram(["serve", "--device", "blk", "--image", image, "--vfs", "1", "--mapping", "1:n",
                                        "--guest", "a=\(socketA),window=0:1024", "--guest", "b=\(socketB),window=1024:1024,weight=2"])
        _ = try serve.line(containing: "\"guest_name\":\"a\"")
        _ = try serve.line(containing: "\"guest_name\":\"b\"")
        let ok = BlockStatus.ok.rawValue, ioError = BlockStatus.ioError.rawValue
        // b connects first: by connection order it would have been given a's window.
        for _ in 0..<2 {
            let b = try Self.connect(socketB)
            #expect(try Self.write(b, sector: 1024) == ok, "b's own window")
            #expect(try Self.write(b, sector: 0) == ioError, "a's window is not b's")
            b.close()
        }
        let a = try Self.connect(socketA)
        defer { a.close() }
        #expect(try Self.write(a, sector: 0) == ok)
        #expect(try Self.write(a, sector: 1024) == ioError)
        // b again, after a: still its own window.
        let b = try Self.connect(socketB)
        defer { b.close() }
        #expect(try Self.write(b, sector: 2047) == ok)
        #expect(try Self.write(b, sector: 1023) == ioError)
    }

    @Test("GHT-ISO-04: a named guest has one session: a newer connection on its socket is the guest, an older one still open is served no more")
    func newerConnectionSupersedes() throws {
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let image = "/tmp/vg-named-\(tag).img", socket = "/tmp/vg-named-a-\(tag).sock"
        let fd = open(image, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o600)
        #expect(ftruncate(fd, 1024 * 512) == 0)
        close(fd)
        defer { unlink(image) }
        // The library directly: what serve --device blk --vfs 1 --guest a=SOCKET,window=0:1024 sets up.
        var configuration = SharedDeviceConfiguration()
        configuration.model = .block
        configuration.guests = [try NamedGuest(name: "a", socket: socket, window: 0..<1024)]
        let file = try StorageFile(path: image, writable: true)
        let shared = try SharedDevice(configuration) { BlockDevice(file: file, configuration: BlockDevice.Configuration()) }
        defer { shared.stop() }
        let listeners = shared.listeners()
        #expect(listeners.map(\.socket) == [socket] && listeners[0].guest?.name == "a")
        let backEnd = try shared.backEnd(for: listeners[0])
        backEnd.start()
        defer { backEnd.stop(); unlink(socket) }
        let old = try Self.connect(socket)
        defer { old.close() }
        #expect(try Self.write(old, sector: 1) == BlockStatus.ok.rawValue)
        let new = try Self.connect(socket)
        defer { new.close() }
        #expect(try Self.write(new, sector: 2) == BlockStatus.ok.rawValue)
        #expect((try? Self.write(old, sector: 3, timeoutMilliseconds: 1000)) == nil, "the older session's queue is broken, not served")
        #expect(try Self.write(new, sector: 4) == BlockStatus.ok.rawValue)
    }

    static func connect(_ socket: String) throws -> FrontEnd {
        var configuration = FrontEndConfiguration()
        configuration.deviceFeatures = [.blockFlush]
        return try FrontEnd.connect(socketPath: socket, configuration: configuration)
    }

    /// Writes one sector; the status byte.
    static func write(_ guest: FrontEnd, sector: UInt64, timeoutMilliseconds: Int32 = 10_000) throws -> UInt8? {
        let q = guest.queues[0]
        _ = try q.submit(BlockRequestHeader(type: .write, sector: sector).bytes + [UInt8](repeating: 0x77, count: 512), replyCapacity: 1)
        try q.publish()
        return try q.waitForCompletions(timeoutMilliseconds: timeoutMilliseconds).first?.reply.last
    }
}

/// A `virtio-grant` process (the executable beside the test binary) whose JSON lines are read
/// as it prints them; killed when the test lets go of it.
final class SpawnedProgram {
    let process: ChildProcess
    private var output: LineReader

    /// Spawns `virtio-grant arguments...`; its standard output (and error, if `standardError`)
    /// is read here.
    init(_ arguments: [String], standardError: Bool = false) throws {
        let pipe = try Pipe()
        let descriptors = standardError ? [(child: Int32(1), parent: pipe.writeEnd), (child: Int32(2), parent: pipe.writeEnd)]
            : [(child: Int32(1), parent: pipe.writeEnd)]
        process = try ChildProcess.spawn(path: try ChildProcess.executableDirectory + "/virtio-grant", arguments: arguments,
                                         fileDescriptors: descriptors)
        pipe.writeEnd.close()
        output = LineReader(pipe.readEnd)
    }

    /// Every line still to come, until the program closes its output (or 10 s of silence).
    func remainingOutput() -> String {
        var text = ""
        while let line = try? output.readLine(timeoutMilliseconds: 10_000) { text += line + "\n" }
        return text
    }

    /// The next line containing `text`.
    func line(containing text: String, timeoutMilliseconds: Int32 = 30_000) throws -> String {
        while true {
            let line = try output.readLine(timeoutMilliseconds: timeoutMilliseconds)
            if line.contains(text) { return line }
        }
    }

    func finish() throws -> ChildProcess.ExitStatus? {
        if let status = try process.wait(timeoutMilliseconds: 30_000) { return status }
        try process.kill()
        return try process.wait(timeoutMilliseconds: 5000)
    }

    deinit {
        if process.exitStatus == nil {
            try? process.kill()
            _ = try? process.wait(timeoutMilliseconds: 5000)
        }
    }
}
