#if canImport(Glibc)
import Glibc
#endif
import Testing
import VirtioSystem

extension SystemTests {
    @Suite("Doorbells and polling")
    struct EventTests {
        @Test("GHT-OS-10: doorbell signals coalesce: three signals, one drain of 3, then 0")
        func coalescing() throws {
            let bell = try Doorbell()
            #expect(try bell.drain() == 0, "nothing pending")
            try bell.signal()
            try bell.signal()
            try bell.signal()
            #expect(try bell.drain() == 3)
            #expect(try bell.drain() == 0)
        }

        @Test("GHT-OS-10: a signal on a full counter is not an error and wakes the waiter")
        func fullCounter() throws {
            let bell = try Doorbell()
            var nearlyFull: UInt64 = 0xFFFF_FFFF_FFFF_FFFE  // the eventfd maximum
            #expect(write(bell.fd.rawValue, &nearlyFull, 8) == 8)
            try bell.signal()
            #expect(try bell.wait(timeoutMilliseconds: 0))
            #expect(try bell.drain() == 0xFFFF_FFFF_FFFF_FFFE)
        }

        @Test("GHT-OS-11: wait times out when nothing is pending and reports a signal without taking it")
        func waitTimeout() throws {
            let bell = try Doorbell()
            let start = SystemClock.monotonic.milliseconds
            #expect(try !bell.wait(timeoutMilliseconds: 30))
            let waited = SystemClock.monotonic.milliseconds - start
            #expect(waited >= 29 && waited < 1000, "waited \(waited) ms")
            #expect(try !bell.wait(timeoutMilliseconds: 0))
            try bell.signal()
            #expect(try bell.wait(timeoutMilliseconds: 1000))
            #expect(try bell.wait(timeoutMilliseconds: -1), "still pending: wait does not drain")
            #expect(try bell.drain() == 1)
        }

        @Test("GHT-OS-11: a doorbell adopted from a received descriptor is non-blocking and shares the counter")
        func adopted() throws {
            let bell = try Doorbell()
            // A blocking eventfd, as a careless peer might send one.
            let received = try bell.fd.duplicate()
            let raw = received.rawValue
            #expect(fcntl(raw, F_SETFL, fcntl(raw, F_GETFL) & ~O_NONBLOCK) == 0)
            let other = try Doorbell(adopting: received)
            #expect(fcntl(raw, F_GETFL) & O_NONBLOCK != 0)
            #expect(try other.drain() == 0, "would block forever without O_NONBLOCK")
            let twin = try Doorbell(adopting: try bell.fd.duplicate())
            try twin.signal()
            try twin.signal()
            #expect(try bell.drain() == 2)
        }

        @Test("GHT-OS-12: the poller reports ready descriptors by token, level-triggered, until drained")
        func readiness() throws {
            let poller = try Poller()
            let kick = try Doorbell()
            let call = try Doorbell()
            try poller.add(kick.fd, token: 1)
            try poller.add(call.fd, token: 2)
            var events: [PollEvent] = []
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events) == 0 && events.isEmpty)

            for _ in 0..<5 { try kick.signal() }
            #expect(try poller.wait(timeoutMilliseconds: 1000, into: &events) == 1)
            #expect(events == [PollEvent(token: 1, isReadable: true, isHangup: false, isError: false)])
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events) == 1, "still readable: level-triggered")
            #expect(try kick.drain() == 5, "five kicks, one event: coalesced in the eventfd")
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events) == 0)

            try kick.signal()
            try call.signal()
            #expect(try poller.wait(timeoutMilliseconds: 1000, into: &events) == 2)
            #expect(Set(events.map(\.token)) == [1, 2] && events.allSatisfy(\.isReadable))
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events, maxEvents: 1) == 1 && events.count == 1)

            try poller.remove(call.fd)
            _ = try kick.drain()
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events) == 0, "a removed descriptor is not reported")
            #expect(throws: SystemError(errno: EEXIST, operation: "epoll_ctl(EPOLL_CTL_ADD)")) {
                try poller.add(kick.fd, token: 3)
            }
        }

        @Test("GHT-OS-12: the poller reports a peer that closed its socket as a hangup")
        func hangup() throws {
            let poller = try Poller()
            let (mine, theirs) = try UnixSocket.pair()
            try poller.add(mine.fd, token: 42)
            var events: [PollEvent] = []
            #expect(try poller.wait(timeoutMilliseconds: 0, into: &events) == 0)
            try theirs.send([7])
            #expect(try poller.wait(timeoutMilliseconds: 1000, into: &events) == 1)
            #expect(events.first.map { $0.token == 42 && $0.isReadable && !$0.isHangup } == true)
            theirs.close()
            #expect(try poller.wait(timeoutMilliseconds: 1000, into: &events) == 1)
            let event = try #require(events.first)
            #expect(event.token == 42 && event.isHangup && event.isReadable && !event.isError)
            // The byte sent before the close is still there, then the end of the stream.
            var buffer = [UInt8](repeating: 0, count: 4)
            let first = try buffer.withUnsafeMutableBytes { try mine.receive(into: $0) }
            let second = try buffer.withUnsafeMutableBytes { try mine.receive(into: $0) }
            #expect(first.count == 1 && buffer[0] == 7 && second.count == 0)
        }
    }
}
