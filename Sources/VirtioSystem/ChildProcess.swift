#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim
import VirtioCore
import Synchronization

/// A process started with `posix_spawn`, for the multi-process demo and for tests.
///
/// `posix_spawn` is used rather than `fork`: the test runner and the transport are
/// multi-threaded, and a forked child of a multi-threaded process may only call
/// async-signal-safe functions. Only the standard streams and the descriptors listed in
/// `fileDescriptors` reach the child.
///
/// Call ``wait(timeoutMilliseconds:)`` until it returns a status: a child still running when
/// this object is deallocated is not waited for, and stays a zombie once it exits until this
/// process ends.
public final class ChildProcess: Sendable {
    /// How a child ended.
    public enum ExitStatus: Hashable, Sendable, CustomStringConvertible {
        /// The child called `exit` (or returned from `main`) with this code (0–255).
        case exited(Int32)
        /// The child was killed by this signal (`SIGKILL` is 9).
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): "exited(\(code))"
            case .signaled(let signal): "signaled(\(signal))"
            }
        }
    }

    /// The child's process ID.
    public let pid: pid_t
    // Readable when the child exits; nil if the kernel has no pidfd_open (before 5.3).
    private let pidfd: FileDescriptor?
    // The status once reaped. `kill` and `waitpid` run under this lock, so a signal is never
    // sent after the pid has been reaped and possibly reused.
    private let reaped = Locked<ExitStatus?>(nil)

    private init(pid: pid_t, pidfd: FileDescriptor?) {
        self.pid = pid
        self.pidfd = pidfd
    }

    // Reap a child that already exited; never block in deinit.
    deinit { _ = try? reapIfExited() }

    /// Starts the executable at `path`.
    ///
    /// The corresponding C function is `posix_spawn` (no `PATH` search). The child starts with
    /// an empty signal mask and every signal at its default action, whatever this process
    /// blocks or ignores.
    ///
    /// - Parameters:
    ///   - path: The executable.
    ///   - arguments: The arguments after `argv[0]`, which is `path`.
    ///   - environment: The child's environment; `nil` passes this process's own.
    ///   - fileDescriptors: Each `parent` descriptor appears in the child as number `child`
    ///     (for example `(child: 3, parent: socket.fd)`); the child numbers must differ.
    ///     The mapping goes through `dup2`, which clears `FD_CLOEXEC` on the target. Every
    ///     other descriptor from 3 up is closed in the child
    ///     (`posix_spawn_file_actions_addclose`, `..._addclosefrom_np`), even one that some
    ///     other code opened without `FD_CLOEXEC`: the child gets these and the standard
    ///     streams (0–2, inherited unless mapped), nothing else.
    public static func spawn(
        path: String,
        arguments: [String] = [],
        environment: [String: String]? = nil,
        fileDescriptors: [(child: Int32, parent: FileDescriptor)] = []
    ) throws(SystemError) -> ChildProcess {
        let targets = fileDescriptors.map(\.child)
        precondition(targets.allSatisfy { $0 >= 0 } && Set(targets).count == targets.count, "child descriptor numbers must be distinct and non-negative")
        // Parking each source above every target first means no dup2 can overwrite a source
        // that a later dup2 still reads, and no source equals its target (dup2(fd, fd) would
        // leave FD_CLOEXEC set). The parked copies are close-on-exec and closed on return.
        let lowestParking = (targets.max() ?? 2) + 1
        var parked: [FileDescriptor] = []
        for mapping in fileDescriptors {
            parked.append(try mapping.parent.duplicate(atLeast: lowestParking))
        }

        var actions = posix_spawn_file_actions_t()
        try nothingOrErrorNumber("posix_spawn_file_actions_init") { posix_spawn_file_actions_init(&actions) }
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (mapping, source) in zip(fileDescriptors, parked) {
            let from = source.rawValue
            try nothingOrErrorNumber("posix_spawn_file_actions_adddup2") { posix_spawn_file_actions_adddup2(&actions, from, mapping.child) }
        }
        // Code we do not control (test runners, libraries) may open descriptors without
        // FD_CLOEXEC; close everything above the standard streams that is not a target.
        // Closing a number that is not open is ignored by posix_spawn.
        for number in 3..<max(lowestParking, 3) where !targets.contains(number) {
            try nothingOrErrorNumber("posix_spawn_file_actions_addclose") { posix_spawn_file_actions_addclose(&actions, number) }
        }
        do {
            try nothingOrErrorNumber("posix_spawn_file_actions_addclosefrom_np") {
                CVirtioShim_spawn_addclosefrom(&actions, max(lowestParking, 3))
            }
        } catch where error.errno == ENOSYS {
            // glibc before 2.34: only FD_CLOEXEC keeps higher descriptors out of the child.
        }

        var attributes = posix_spawnattr_t()
        try nothingOrErrorNumber("posix_spawnattr_init") { posix_spawnattr_init(&attributes) }
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        var allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        try nothingOrErrorNumber("posix_spawnattr_setsigmask") { posix_spawnattr_setsigmask(&attributes, &noSignals) }
        try nothingOrErrorNumber("posix_spawnattr_setsigdefault") { posix_spawnattr_setsigdefault(&attributes, &allSignals) }
        let flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        try nothingOrErrorNumber("posix_spawnattr_setflags") { posix_spawnattr_setflags(&attributes, flags) }

        let argv = CStringArray([path] + arguments)
        let envp = environment.map { CStringArray($0.map { "\($0.key)=\($0.value)" }) }
        var pid: pid_t = 0
        try nothingOrErrorNumber("posix_spawn") {
            posix_spawn(&pid, path, &actions, &attributes, argv.pointers, envp?.pointers ?? environ)
        }
        withExtendedLifetime((parked, argv, envp)) {}

        let pidfd: FileDescriptor?
        do {
            pidfd = FileDescriptor(adopting: try valueOrErrno("pidfd_open") { CVirtioShim_pidfd_open(pid) })
        } catch {
            pidfd = nil
        }
        return ChildProcess(pid: pid, pidfd: pidfd)
    }

    /// Sends `signal` to the child; does nothing once the child has been reaped.
    ///
    /// The corresponding C function is `kill`.
    public func kill(_ signal: Int32 = SIGKILL) throws(SystemError) {
        try reaped.withLock { (status) throws(SystemError) in
            guard status == nil else { return }
            let pid = pid
            try nothingOrErrno("kill") { Glibc.kill(pid, signal) }
        }
    }

    /// The exit status, if the child has already been reaped by ``wait(timeoutMilliseconds:)``.
    public var exitStatus: ExitStatus? { reaped.withLock { $0 } }

    /// Waits for the child to end and reaps it.
    ///
    /// The corresponding C functions are `poll` on a pidfd (`pidfd_open`), then
    /// `waitpid(pid, WNOHANG)`. Without pidfd support, `waitpid(WNOHANG)` is retried every
    /// millisecond until the timeout.
    ///
    /// - Parameter timeoutMilliseconds: 0 only checks, a negative value waits forever.
    /// - Returns: How the child ended, or `nil` if it is still running at the timeout. Once
    ///   a status has been returned, every later call returns it again.
    public func wait(timeoutMilliseconds: Int32 = -1) throws(SystemError) -> ExitStatus? {
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        while true {
            if let status = try reapIfExited() { return status }
            let left = timeout.remainingMilliseconds()
            if left == 0 { return nil }
            if let pidfd {
                var entry = pollfd(fd: pidfd.rawValue, events: Int16(POLLIN), revents: 0)
                _ = try valueOrErrno("poll") { poll(&entry, 1, timeout.remainingMilliseconds()) }
            } else {
                SystemClock.sleep(milliseconds: 1)
            }
        }
    }

    private func reapIfExited() throws(SystemError) -> ExitStatus? {
        try reaped.withLock { (reaped) throws(SystemError) -> ExitStatus? in
            if let reaped { return reaped }
            var raw: Int32 = 0
            let pid = pid
            guard try valueOrErrno("waitpid", { waitpid(pid, &raw, WNOHANG) }) == pid else { return nil }
            // The <sys/wait.h> macros are not importable: low 7 bits 0 means exited, with the
            // code in bits 8-15; otherwise the low 7 bits are the terminating signal.
            let status: ExitStatus = raw & 0x7f == 0 ? .exited((raw >> 8) & 0xff) : .signaled(raw & 0x7f)
            reaped = status
            return status
        }
    }

    /// The directory holding this process's executable: `dirname` of `readlink("/proc/self/exe")`.
    ///
    /// Under `swift test` this is the build directory, where the package's executables are.
    public static var executableDirectory: String {
        get throws(SystemError) {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let length = try valueOrErrno("readlink(/proc/self/exe)") {
                readlink("/proc/self/exe", &buffer, buffer.count - 1)
            }
            let path = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard let slash = path.lastIndex(of: "/") else { return "." }
            return slash == path.startIndex ? "/" : String(path[..<slash])
        }
    }
}

/// A NULL-terminated `char *[]` that frees itself and its strings when deallocated.
private final class CStringArray {
    package let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let count: Int

    package init(_ strings: [String]) {
        count = strings.count + 1
        pointers = .allocate(capacity: count)
        pointers.initialize(from: strings.map { strdup($0) } + [nil], count: count)
    }

    deinit {
        for index in 0..<count { free(pointers[index]) }
        pointers.deallocate()
    }
}
