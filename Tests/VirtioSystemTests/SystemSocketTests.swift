#if canImport(Glibc)
import Glibc
#endif
import Testing
import VirtioCore
import VirtioSystem

extension SystemTests {
    @Suite("Unix sockets and descriptor passing")
    struct SocketTests {
        @Test("GHT-OS-13, GHT-OS-09: a memfd and two eventfds pass over a socketpair and stay the same files")
        func passOverPair() throws {
            let (sender, receiver) = try UnixSocket.pair()
            try passMemoryAndDoorbells(from: sender, to: receiver)
        }

        @Test("GHT-OS-13, GHT-OS-17: descriptors pass over a listening socket, whose file goes away on close")
        func passOverListener() throws {
            let path = uniqueSocketPath("listen")
            let listener = try UnixSocket.listen(path: path)
            #expect(pathExists(path))
            let client = try UnixSocket.connect(path: path)
            let server = try listener.accept()
            try passMemoryAndDoorbells(from: client, to: server)
            try passMemoryAndDoorbells(from: server, to: client)
            listener.close()
            listener.close()
            #expect(!pathExists(path))
        }

        @Test("GHT-OS-13: a large send goes out whole, with the descriptors on its first byte")
        func largeSend() throws {
            let (sender, receiver) = try UnixSocket.pair()
            let bell = try Doorbell()
            let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let reader = TestThread { () -> ([UInt8], Int, Int) in
                var received: [UInt8] = []
                var descriptors = 0
                var firstReceiveDescriptors = -1
                var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                while received.count < payload.count {
                    guard let part = try? buffer.withUnsafeMutableBytes({ try receiver.receive(into: $0, maxFileDescriptors: 1) }),
                          part.count > 0 else { break }
                    if firstReceiveDescriptors < 0 { firstReceiveDescriptors = part.fds.count }
                    descriptors += part.fds.count
                    received += buffer[..<part.count]
                }
                return (received, firstReceiveDescriptors, descriptors)
            }
            try sender.send(payload, fds: [bell.fd.rawValue])
            let (received, first, total) = reader.join()
            #expect(received.count == payload.count && received == payload)
            #expect(first == 1 && total == 1)
        }

        @Test("GHT-OS-14: more descriptors than allowed is a typed error, and none of them stays open")
        func controlTruncated() throws {
            let (sender, receiver) = try UnixSocket.pair()
            let sockets = [fileIdentity(of: sender.fd.rawValue), fileIdentity(of: receiver.fd.rawValue)]
            let name = uniqueName("ctrunc")
            do {
                let regions = try (0..<4).map { _ in try SharedMemory.create(name: name, size: SharedMemory.pageSize) }
                let fds = regions.map(\.fd.rawValue)
                // The numbers are used below: the regions (which close them) must live that long,
                // also in an optimized build.
                defer { withExtendedLifetime(regions) {} }
                #expect(memfdDescriptorCount(named: name) == 4)
                // 3 is the interesting limit: CMSG_SPACE(12) has room for a fourth descriptor.
                for allowed in [2, 3, 0] {
                    try sender.send([1, 2, 3, 4], fds: fds)
                    var buffer = [UInt8](repeating: 0, count: 16)
                    #expect(throws: UnixSocketError.controlTruncated(bytesReceived: 4)) {
                        _ = try buffer.withUnsafeMutableBytes { try receiver.receive(into: $0, maxFileDescriptors: allowed) }
                    }
                    #expect(buffer[..<4] == [1, 2, 3, 4], "the bytes still arrived")
                    #expect(memfdDescriptorCount(named: name) == 4, "only the sender's four are open (allowed \(allowed))")
                }
                // The stream is still usable after the refusal.
                try sender.send([9], fds: Array(fds[..<2]))
                var byte: UInt8 = 0
                let fine = try withUnsafeMutableBytes(of: &byte) { try receiver.receive(into: $0, maxFileDescriptors: 2) }
                #expect(fine.count == 1 && byte == 9 && fine.fds.count == 2)
            }
            #expect(memfdDescriptorCount(named: name) == 0)
            sender.close()
            receiver.close()
            #expect(try openDescriptorCount(referringTo: sockets) == 0)
        }

        @Test("GHT-OS-15: a control message other than SCM_RIGHTS is refused and its descriptors are closed")
        func unexpectedControl() throws {
            let (sender, receiver) = try UnixSocket.pair()
            var on: Int32 = 1
            // With SO_PASSCRED the kernel adds an SCM_CREDENTIALS message to every receive.
            #expect(setsockopt(receiver.fd.rawValue, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size)) == 0)
            let name = uniqueName("creds")
            let memory = try SharedMemory.create(name: name, size: SharedMemory.pageSize)
            try sender.send([5], fds: [memory.fd.rawValue])
            var byte: UInt8 = 0
            let scmCredentials: Int32 = 2  // SCM_CREDENTIALS, GNU-only in Glibc
            // Room for the credentials (CMSG_SPACE(12) = 32 bytes) and the descriptor after them.
            #expect(throws: UnixSocketError.unexpectedControlMessage(level: SOL_SOCKET, type: scmCredentials)) {
                _ = try withUnsafeMutableBytes(of: &byte) { try receiver.receive(into: $0, maxFileDescriptors: 10) }
            }
            #expect(byte == 5 && memfdDescriptorCount(named: name) == 1, "the received copy was closed")
            // With room for one descriptor only, the credentials crowd it out: truncated, and
            // again nothing stays open.
            try sender.send([6], fds: [memory.fd.rawValue])
            #expect(throws: UnixSocketError.controlTruncated(bytesReceived: 1)) {
                _ = try withUnsafeMutableBytes(of: &byte) { try receiver.receive(into: $0, maxFileDescriptors: 1) }
            }
            #expect(byte == 6 && memfdDescriptorCount(named: name) == 1)
        }

        @Test("GHT-OS-16: a receive returns 0 bytes once the peer closed or shut down, and a send to it is EPIPE")
        func peerClosed() throws {
            var buffer = [UInt8](repeating: 0, count: 8)
            let (a, b) = try UnixSocket.pair()
            try a.send([1, 2, 3])
            a.close()
            let data = try buffer.withUnsafeMutableBytes { try b.receive(into: $0, maxFileDescriptors: 4) }
            #expect(data.count == 3 && data.fds.isEmpty)
            let end = try buffer.withUnsafeMutableBytes { try b.receive(into: $0, maxFileDescriptors: 4) }
            #expect(end.count == 0 && end.fds.isEmpty)
            // MSG_NOSIGNAL: an error, not a SIGPIPE that would kill the test process.
            #expect(throws: SystemError(errno: EPIPE, operation: "sendmsg")) { try b.send([1]) }

            let (c, d) = try UnixSocket.pair()
            try c.shutdown()
            let afterShutdown = try buffer.withUnsafeMutableBytes { try d.receive(into: $0) }
            #expect(afterShutdown.count == 0)
        }

        @Test("GHT-OS-17: listen replaces only a stale socket file; another file or a live listener makes it fail")
        func listenPathRules() throws {
            let path = uniqueSocketPath("stale")
            let dead = try UnixSocket.listen(path: path)
            dead.fd.close()  // the socket is gone, its file stays: stale
            #expect(pathExists(path))
            let live = try UnixSocket.listen(path: path)
            #expect(throws: UnixSocketError.addressInUse(path)) { _ = try UnixSocket.listen(path: path) }
            // Liveness is probed by connecting: the live listener sees one connection that
            // closes at once.
            let probe = try live.accept()
            var probeByte: UInt8 = 0
            #expect(try withUnsafeMutableBytes(of: &probeByte) { try probe.receive(into: $0) }.count == 0)
            let client = try UnixSocket.connect(path: path)
            let server = try live.accept()
            try client.send([42])
            var byte: UInt8 = 0
            #expect(try withUnsafeMutableBytes(of: &byte) { try server.receive(into: $0) }.count == 1 && byte == 42)
            dead.close()
            #expect(pathExists(path), "closing the dead listener leaves the new listener's file alone")
            live.close()
            #expect(!pathExists(path))

            let file = "/tmp/\(uniqueName("regular"))"
            let raw = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            try #require(raw >= 0)
            close(raw)
            defer { unlink(file) }
            #expect(throws: UnixSocketError.notASocket(file)) { _ = try UnixSocket.listen(path: file) }
            #expect(pathExists(file), "a file that is not a socket is never removed")

            let long = "/tmp/" + String(repeating: "x", count: 120)
            #expect(throws: UnixSocketError.invalidPath(long)) { _ = try UnixSocket.listen(path: long) }
            #expect(throws: UnixSocketError.invalidPath("")) { _ = try UnixSocket.connect(path: "") }
        }

        @Test("GHT-OS-18: a receive that outlasts the receive timeout fails with timedOut")
        func receiveTimeout() throws {
            let (a, b) = try UnixSocket.pair()
            try b.setReceiveTimeout(milliseconds: 30)
            var byte: UInt8 = 0
            let start = SystemClock.monotonic.milliseconds
            #expect(throws: UnixSocketError.timedOut) {
                _ = try withUnsafeMutableBytes(of: &byte) { try b.receive(into: $0) }
            }
            #expect(SystemClock.monotonic.milliseconds - start >= 25)
            try a.send([3])
            try b.setReceiveTimeout(milliseconds: nil)
            #expect(try withUnsafeMutableBytes(of: &byte) { try b.receive(into: $0) }.count == 1 && byte == 3)
        }
    }
}

/// Sends a memfd and two eventfds from `sender` to `receiver` and checks that the receiver's
/// copies are the same memory and the same doorbells.
private func passMemoryAndDoorbells(from sender: UnixSocket, to receiver: UnixSocket) throws {
    let page = SharedMemory.pageSize
    let name = uniqueName("pass")
    let memory = try SharedMemory.create(name: name, size: 2 * page)
    let kick = try Doorbell()
    let call = try Doorbell()
    let header: [UInt8] = [0xAB, 0xCD, 0x01, 0x02]
    try sender.send(header, fds: [memory.fd.rawValue, kick.fd.rawValue, call.fd.rawValue])

    var buffer = [UInt8](repeating: 0, count: 64)
    let (count, fds) = try buffer.withUnsafeMutableBytes { try receiver.receive(into: $0, maxFileDescriptors: 3) }
    #expect(count == header.count && Array(buffer[..<count]) == header)
    try #require(fds.count == 3)
    #expect(fds.allSatisfy { $0.isOpen && isCloseOnExec($0) })
    #expect(memfdDescriptorCount(named: name) == 2, "the sender's and the receiver's")

    let mapped = try SharedMemory.map(fd: fds[0], size: 2 * page, requiringSealedSize: true)
    let text = Array("hello through SCM_RIGHTS".utf8)
    _ = text.withUnsafeBytes { mapped.range.copyBytes(to: page, from: $0) }
    var seen = [UInt8](repeating: 0, count: text.count)
    _ = seen.withUnsafeMutableBytes { memory.range.copyBytes(from: page, into: $0) }
    #expect(seen == text)
    memory.range.fill(with: 0x5A)
    #expect(mapped.range.withUnsafeBytes { $0.allSatisfy { $0 == 0x5A } })

    let receivedKick = try Doorbell(adopting: fds[1])
    let receivedCall = try Doorbell(adopting: fds[2])
    try receivedKick.signal()
    try receivedKick.signal()
    try call.signal()
    #expect(try kick.drain() == 2, "kicks through the receiver's copy reach the sender's")
    #expect(try receivedCall.drain() == 1, "and calls through the sender's copy reach the receiver's")
    #expect(try call.drain() == 0, "one counter: drained through either copy")
}
