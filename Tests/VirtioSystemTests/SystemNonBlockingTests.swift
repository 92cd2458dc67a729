#if canImport(Glibc)
import Glibc
#endif
import Testing
import VirtioSystem

extension SystemTests {
    @Suite("Non-blocking sockets and poll interest")
    struct NonBlockingTests {
        @Test("GHT-OS-22: receiveAvailable: nil when nothing is there, the bytes when they are, 0 at end of stream; never waits")
        func receiveAvailable() throws {
            let (a, b) = try UnixSocket.pair()
            var buffer = [UInt8](repeating: 0, count: 16)
            #expect(try buffer.withUnsafeMutableBytes { try b.receiveAvailable(into: $0) } == nil)
            try a.send([1, 2, 3])
            #expect(try buffer.withUnsafeMutableBytes { try b.receiveAvailable(into: $0) } == 3)
            #expect(buffer.prefix(3) == [1, 2, 3])
            try a.shutdownWriting()
            #expect(try buffer.withUnsafeMutableBytes { try b.receiveAvailable(into: $0) } == 0)
        }

        @Test("GHT-OS-22: sendAvailable: takes what fits and returns 0 once the peer's buffer is full; a closed peer is EPIPE, not SIGPIPE")
        func sendAvailable() throws {
            let (a, b) = try UnixSocket.pair()
            let chunk = [UInt8](repeating: 7, count: 65536)
            var total = 0, last = -1
            while last != 0 && total < 64 << 20 {
                last = try chunk.withUnsafeBytes { try a.sendAvailable($0) }
                total += last
            }
            #expect(last == 0 && total > 0, "full after \(total) bytes")
            b.close()
            #expect(throws: SystemError.self) { _ = try chunk.withUnsafeBytes { try a.sendAvailable($0) } }
        }

        @Test("GHT-OS-23: Poller interest: writable is reported only when asked for; modify changes interest and token; an empty interest still reports hangup")
        func interest() throws {
            let (a, b) = try UnixSocket.pair()
            let poller = try Poller()
            var events: [PollEvent] = []
            try poller.add(a.fd, token: 5, interest: .readable)
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events) == 0, "writable, but not asked")
            try poller.modify(a.fd, token: 6, interest: [.readable, .writable])
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events) == 1)
            #expect(events.first?.token == 6 && events.first?.isWritable == true && events.first?.isReadable == false)
            try b.send([1])
            _ = try poller.wait(timeoutMilliseconds: 0, into: &events)
            #expect(events.first?.isReadable == true)
            try poller.modify(a.fd, token: 7, interest: [])
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events) == 0)
            b.close()
            _ = try poller.wait(timeoutMilliseconds: 100, into: &events)
            #expect(events.first?.token == 7 && events.first?.isHangup == true)
        }
    }
}
