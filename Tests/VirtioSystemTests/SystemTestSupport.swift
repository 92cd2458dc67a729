#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import VirtioCore
import Testing
import VirtioSystem

// Shared helpers for the System* test files. The OS-layer tests run one at a time (they count
// process-wide descriptors), inside this parent suite; each file adds a nested suite.

extension Tag {
    @Tag static var system: Self
}

@Suite("OS layer", .serialized, .tags(.system))
struct SystemTests {}

/// A name no other test (or test run) uses, for memfds and socket paths.
func uniqueName(_ label: String) -> String {
    let serial = nameSerial.wrappingAdd(1, ordering: .relaxed).newValue
    return "vg-\(label)-\(getpid())-\(serial)"
}

private let nameSerial = Atomic<Int>(0)

/// A socket path under /tmp; the test removes it (or checks that the library did).
func uniqueSocketPath(_ label: String) -> String { "/tmp/\(uniqueName(label)).sock" }

/// Whether anything exists at `path` (without following a symlink).
func pathExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

/// The targets of this process's open descriptors, as `readlink` shows them
/// (`/memfd:name (deleted)`, `socket:[inode]`, `anon_inode:[eventfd]`...).
func openDescriptorTargets() -> [Int32: String] {
    guard let directory = opendir("/proc/self/fd") else { return [:] }
    defer { closedir(directory) }
    var targets: [Int32: String] = [:]
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let fd = Int32(name) else { continue }
        var buffer = [UInt8](repeating: 0, count: 512)
        let length = buffer.withUnsafeMutableBufferPointer { pointer in
            pointer.withMemoryRebound(to: CChar.self) { readlink("/proc/self/fd/\(name)", $0.baseAddress!, $0.count) }
        }
        if length > 0 { targets[fd] = String(decoding: buffer[..<length], as: UTF8.self) }
    }
    return targets
}

/// How many open descriptors name a memfd whose name contains `name`. Unlike a total count,
/// this is not disturbed by other tests running at the same time.
func memfdDescriptorCount(named name: String) -> Int {
    openDescriptorTargets().values.filter { $0.hasPrefix("/memfd:") && $0.contains(name) }.count
}

/// The lines of /proc/self/maps that mention `text`.
func mappingLines(containing text: String) -> [String] {
    guard let file = fopen("/proc/self/maps", "r") else { return [] }
    defer { fclose(file) }
    var lines: [String] = []
    var buffer = [CChar](repeating: 0, count: 4096)
    while fgets(&buffer, Int32(buffer.count), file) != nil {
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if line.contains(text) { lines.append(line) }
    }
    return lines
}

/// How many open descriptors refer to one of `identities` (``fileIdentity(of:)``): a leak check
/// that other suites, opening and closing their own descriptors meanwhile, cannot disturb.
func openDescriptorCount(referringTo identities: [String?]) throws -> Int {
    let wanted = identities.compactMap { $0 }
    return try openFileIdentities().filter { wanted.contains($0) }.count
}

/// Whether `fd` has FD_CLOEXEC set.
func isCloseOnExec(_ fd: FileDescriptor) -> Bool {
    let flags = fcntl(fd.rawValue, F_GETFD)
    return flags >= 0 && flags & FD_CLOEXEC != 0
}

/// A plain POSIX thread running `body`, for tests that must block (a receiver draining a large
/// send, a waiter to interrupt with a signal) without tying up Swift's cooperative pool.
final class TestThread<Result: Sendable>: Sendable {
    private let thread: pthread_t

    init(_ body: @escaping @Sendable () -> Result) {
        let slot = ResultSlot<Result>()
        self.resultSlot = slot
        thread = startThread { slot.value.withLock { $0 = body() } }
    }

    private let resultSlot: ResultSlot<Result>

    /// Sends `signal` to the thread.
    func signal(_ signal: Int32) { _ = pthread_kill(thread, signal) }

    /// Waits for the thread and returns what `body` returned.
    func join() -> Result {
        _ = pthread_join(thread, nil)
        return resultSlot.value.withLock { $0! }
    }
}

private final class ResultSlot<Result: Sendable>: Sendable {
    let value = Locked<Result?>(nil)
}

private final class ThreadStart {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

private func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    var thread = pthread_t()
    let context = Unmanaged.passRetained(ThreadStart(body)).toOpaque()
    let created = pthread_create(&thread, nil, { context in
        Unmanaged<ThreadStart>.fromOpaque(context!).takeRetainedValue().body()
        return nil
    }, context)
    precondition(created == 0, "pthread_create failed: \(created)")
    return thread
}
