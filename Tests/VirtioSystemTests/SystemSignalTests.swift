import Testing
import VirtioSystem

#if canImport(Glibc)
import Glibc
#endif

extension SystemTests {
    /// Signals become bytes on a pipe. SIGUSR1 only, raised at a thread of the test's own, so
    /// that no other test's thread can take it; its action is back to what it was when each test ends.
    @Suite("Signal forwarding", .serialized)
    struct SignalTests {
        static func action(_ signal: Int32) -> UInt {
            var current = sigaction()
            sigaction(signal, nil, &current)
            return unsafeBitCast(current.__sigaction_handler.sa_handler, to: UInt.self)
        }

        /// A forwarder for `signals`, waiting (up to 10 s) while another test of the process
        /// holds the one forwarder there may be (serve-until-signal in the transport's tests).
        static func forwarder(_ signals: [Int32]) throws(SystemError) -> SignalForwarder {
            var attempts = 0
            while true {
                let made: Result<SignalForwarder, SystemError>
                do throws(SystemError) { made = .success(try SignalForwarder(signals: signals)) } catch { made = .failure(error) }
                if case .failure(let error) = made, error.errno == EBUSY, attempts < 1000 {
                    attempts += 1
                    usleep(10_000)
                    continue
                }
                return try made.get()
            }
        }

        @Test("GHT-EMB-04: a forwarded signal is a readable byte naming it; restore puts the previous action back; one forwarder at a time")
        func forwards() throws {
            let before = Self.action(SIGUSR1)
            let forwarder = try Self.forwarder([SIGUSR1])
            #expect(forwarder.next() == nil)
            #expect(throws: SystemError(errno: EBUSY, operation: "sigaction: signals are forwarded already")) {
                _ = try SignalForwarder(signals: [SIGUSR2])
            }
            // The test runner's threads block SIGUSR1; a thread of our own unblocks it and
            // raises it twice at itself.
            let raiser = WorkerThread(name: "raise") {
                var usr1 = sigset_t()
                sigemptyset(&usr1)
                sigaddset(&usr1, SIGUSR1)
                pthread_sigmask(SIG_UNBLOCK, &usr1, nil)
                raise(SIGUSR1)
                raise(SIGUSR1)
            }
            raiser.join()
            let poller = try Poller()
            try poller.add(forwarder.fd, token: 7)
            var events: [PollEvent] = []
            #expect(try poller.wait(timeoutMilliseconds: 1000, into: &events) == 1 && events.first?.token == 7)
            #expect(forwarder.next() == SIGUSR1)
            #expect(forwarder.next() == SIGUSR1)
            #expect(forwarder.next() == nil)
            forwarder.restore()
            #expect(Self.action(SIGUSR1) == before)
            #expect(SignalForwarder.name(of: SIGTERM) == "SIGTERM" && SignalForwarder.name(of: 40) == "signal 40")
            // Released: the next one may be installed.
            let next = try Self.forwarder([SIGUSR1])
            next.restore()
        }

        @Test("GHT-EMB-04: a signal that cannot be caught is refused with EINVAL and nothing stays installed")
        func uncatchable() throws {
            let before = Self.action(SIGUSR1)
            #expect(throws: SystemError(errno: EINVAL, operation: "sigaction")) { _ = try Self.forwarder([SIGUSR1, SIGKILL]) }
            #expect(Self.action(SIGUSR1) == before)
            let again = try Self.forwarder([SIGUSR1])
            again.restore()
        }
    }
}
