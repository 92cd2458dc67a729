#if canImport(Glibc)
import Glibc
#endif
import Testing
import VirtioCore
import VirtioSystem

extension SystemTests {
    @Suite("Child processes")
    struct ProcessTests {
        @Test("GHT-OS-19, GHT-OS-09: a spawned child uses descriptors received over SCM_RIGHTS, and gets no others")
        func childUsesReceivedDescriptors() throws {
            let memory = try SharedMemory.create(name: uniqueName("child"), size: SharedMemory.pageSize)
            let kick = try Doorbell()
            let poller = try Poller()
            try poller.add(kick.fd, token: 9)

            // Hand the memfd and the doorbell over a socket first, as the vhost-user front-end
            // does, and give the child the received copies.
            let (sender, receiver) = try UnixSocket.pair()
            try sender.send([0], fds: [memory.fd.rawValue, kick.fd.rawValue])
            var byte: UInt8 = 0
            let received = try withUnsafeMutableBytes(of: &byte) { try receiver.receive(into: $0, maxFileDescriptors: 2) }
            try #require(received.fds.count == 2)
            let (parentEnd, childEnd) = try UnixSocket.pair()
            let decoy = try Doorbell()
            try #require(decoy.fd.rawValue > 6)

            let script = """
                printf 'written by the child' >&3
                printf '\\001\\000\\000\\000\\000\\000\\000\\000' >&4
                ls /proc/self/fd >&5
                """
            let child = try ChildProcess.spawn(
                path: "/bin/sh", arguments: ["-c", script],
                fileDescriptors: [(child: 3, parent: received.fds[0]), (child: 4, parent: received.fds[1]), (child: 5, parent: childEnd.fd)])
            childEnd.close()  // the child holds the only other copy: its exit ends the stream

            var events: [PollEvent] = []
            #expect(try poller.wait(timeoutMilliseconds: 5000, into: &events) == 1 && events.first?.token == 9)
            #expect(try kick.drain() == 1, "the child rang the doorbell through its copy")
            #expect(try child.wait(timeoutMilliseconds: 5000) == .exited(0))

            var text = [UInt8](repeating: 0, count: 20)
            _ = text.withUnsafeMutableBytes { memory.range.copyBytes(into: $0) }
            #expect(String(decoding: text, as: UTF8.self) == "written by the child", "visible through our mapping")

            let listed = Set(try readAll(parentEnd).split(separator: UInt8(ascii: "\n")).compactMap { Int32(String(decoding: $0, as: UTF8.self)) })
            #expect(listed.isSuperset(of: [3, 4, 5]))
            #expect(listed.subtracting([0, 1, 2, 3, 4, 5]).count <= 1, "only ls's own directory descriptor besides ours: \(listed.sorted())")
            #expect(!listed.contains(decoy.fd.rawValue))
        }

        @Test("GHT-OS-19: descriptor mappings that swap numbers reach the child intact")
        func swappedNumbers() throws {
            let nameA = uniqueName("swap-a")
            let nameB = uniqueName("swap-b")
            let a = try SharedMemory.create(name: nameA, size: SharedMemory.pageSize)
            let b = try SharedMemory.create(name: nameB, size: SharedMemory.pageSize)
            let (parentEnd, childEnd) = try UnixSocket.pair()
            let numberA = a.fd.rawValue
            let numberB = b.fd.rawValue
            // A lands on B's number and B on A's: a naive dup2 sequence would give the child
            // the same file twice.
            let child = try ChildProcess.spawn(
                path: "/bin/sh",
                arguments: ["-c", "readlink /proc/self/fd/\(numberB) /proc/self/fd/\(numberA)"],
                fileDescriptors: [(child: numberB, parent: a.fd), (child: numberA, parent: b.fd), (child: 1, parent: childEnd.fd)])
            childEnd.close()
            #expect(try child.wait(timeoutMilliseconds: 5000) == .exited(0))
            let lines = try readAll(parentEnd).split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
            #expect(lines.count == 2)
            #expect(lines.first?.contains(nameA) == true && lines.last?.contains(nameB) == true, "\(lines)")
        }

        @Test("GHT-OS-20: wait times out while the child runs; kill -9 ends it and wait reports the signal")
        func killAndWait() throws {
            let child = try ChildProcess.spawn(path: "/bin/sleep", arguments: ["30"])
            #expect(child.pid > 0)
            let start = SystemClock.monotonic.milliseconds
            #expect(try child.wait(timeoutMilliseconds: 50) == nil)
            #expect(SystemClock.monotonic.milliseconds - start >= 45)
            #expect(try child.wait(timeoutMilliseconds: 0) == nil && child.exitStatus == nil)
            try child.kill(SIGKILL)
            #expect(try child.wait(timeoutMilliseconds: 5000) == .signaled(SIGKILL))
            #expect(child.exitStatus == .signaled(SIGKILL))
            #expect(try child.wait(timeoutMilliseconds: 0) == .signaled(SIGKILL), "reaped once, reported again")
            try child.kill(SIGKILL)  // reaped: no signal goes to a pid that may be reused
            #expect(Glibc.kill(child.pid, 0) == -1 && errno == ESRCH, "no zombie left")
        }

        @Test("GHT-OS-20: the exit code, arguments and environment reach the parent and the child")
        func exitCodes() throws {
            let seven = try ChildProcess.spawn(path: "/bin/sh", arguments: ["-c", "exit 7"])
            #expect(try seven.wait() == .exited(7))
            let counted = try ChildProcess.spawn(path: "/bin/sh", arguments: ["-c", "exit $#", "zero", "one", "two"])
            #expect(try counted.wait(timeoutMilliseconds: 5000) == .exited(2))
            let environment = try ChildProcess.spawn(path: "/bin/sh", arguments: ["-c", "exit $CODE"], environment: ["CODE": "42"])
            #expect(try environment.wait(timeoutMilliseconds: 5000) == .exited(42))
            let ok = try ChildProcess.spawn(path: "/bin/true")
            #expect(try ok.wait(timeoutMilliseconds: 5000) == .exited(0))
            #expect(ChildProcess.ExitStatus.signaled(9).description == "signaled(9)")
        }

        @Test("GHT-OS-20: spawning a missing executable is a SystemError from posix_spawn")
        func missingExecutable() {
            #expect(throws: SystemError(errno: ENOENT, operation: "posix_spawn")) {
                _ = try ChildProcess.spawn(path: "/nonexistent/\(uniqueName("exe"))")
            }
        }

        @Test("GHT-OS-19: the package's executables are found beside the test process")
        func executableDirectory() throws {
            let directory = try ChildProcess.executableDirectory
            #expect(directory.hasPrefix("/") && !directory.hasSuffix("/"))
            #expect(access(directory + "/virtio-grant", X_OK) == 0, "\(directory)/virtio-grant")
        }
    }
}

/// Everything `socket` receives until the peer closes.
private func readAll(_ socket: UnixSocket) throws -> [UInt8] {
    try socket.setReceiveTimeout(milliseconds: 5000)
    var all: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }.count
        if count == 0 { return all }
        all += buffer[..<count]
    }
}
