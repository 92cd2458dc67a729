#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import VirtioSystem

extension SystemTests {
    @Suite("Descriptors, errors and interrupted calls")
    struct DescriptorTests {
        @Test("GHT-OS-01: a failed call is one SystemError with the errno, the operation and strerror's text")
        func systemError() throws {
            let error = SystemError(errno: ENOENT, operation: "connect")
            #expect(error.description == "connect: No such file or directory (errno \(ENOENT))")
            #expect(SystemError(errno: EAGAIN, operation: "read").isWouldBlock && !error.isWouldBlock)

            let path = uniqueSocketPath("absent")
            #expect(throws: UnixSocketError.system(SystemError(errno: ENOENT, operation: "connect"))) {
                _ = try UnixSocket.connect(path: path)
            }
            let poller = try Poller()
            let closed = try Doorbell()
            closed.close()
            #expect(throws: SystemError(errno: EBADF, operation: "epoll_ctl(EPOLL_CTL_ADD)")) {
                try poller.add(closed.fd, token: 1)
            }
        }

        @Test("GHT-OS-03: every descriptor the layer creates, duplicates or receives is close-on-exec")
        func closeOnExec() throws {
            let memory = try SharedMemory.create(name: uniqueName("cloexec"), size: SharedMemory.pageSize)
            let notifier = try Doorbell()
            let poller = try Poller()
            let (left, right) = try UnixSocket.pair()
            let path = uniqueSocketPath("cloexec")
            let listener = try UnixSocket.listen(path: path)
            defer { listener.close() }
            let client = try UnixSocket.connect(path: path)
            let server = try listener.accept()
            try left.send([1], fds: [memory.fd.rawValue, notifier.fd.rawValue])
            var byte: UInt8 = 0
            let received = try withUnsafeMutableBytes(of: &byte) { try right.receive(into: $0, maxFileDescriptors: 2) }
            #expect(received.fds.count == 2)

            let all = [memory.fd, notifier.fd, poller.fd, left.fd, right.fd, listener.fd, client.fd, server.fd,
                       try memory.fd.duplicate()] + received.fds
            for fd in all {
                #expect(isCloseOnExec(fd), "\(fd) lacks FD_CLOEXEC")
            }
        }

        @Test("GHT-OS-04: descriptor identities tell open files apart (eventfds included) and follow duplicates")
        func identities() throws {
            let a = try Doorbell(), b = try Doorbell()
            let memory = try SharedMemory.create(name: "identity-test", size: 4096)
            let ia = try #require(fileIdentity(of: a.fd.rawValue)), ib = try #require(fileIdentity(of: b.fd.rawValue))
            #expect(ia != ib && ia.hasPrefix("anon_inode:[eventfd]#"))
            #expect(try #require(fileIdentity(of: memory.fd.rawValue)).contains("memfd:identity-test"))
            let copy = dup(a.fd.rawValue)
            #expect(fileIdentity(of: copy) == ia)
            #expect(try openFileIdentities().filter { $0 == ia }.count == 2)
            close(copy)
            #expect(try openFileIdentities().filter { $0 == ia }.count == 1)
            #expect(fileIdentity(of: copy) == nil || fileIdentity(of: copy) != ia)
        }

        @Test("GHT-OS-04: a descriptor is closed exactly once: close() is idempotent and deinit closes")
        func closedOnce() throws {
            let name = uniqueName("fd")
            let memory = try SharedMemory.create(name: name, size: SharedMemory.pageSize)
            let copy = try memory.fd.duplicate()
            #expect(copy.rawValue != memory.fd.rawValue && memfdDescriptorCount(named: name) == 2)
            let number = copy.rawValue
            copy.close()
            #expect(!copy.isOpen && copy.rawValue == -1 && copy.description == "FileDescriptor(closed)")
            #expect(memfdDescriptorCount(named: name) == 1)

            // The number is free now and is usually handed out again at once. A second close
            // must not touch the new owner.
            let reuser = try Doorbell()
            let reuserIdentity = fileIdentity(of: reuser.fd.rawValue)
            copy.close()
            #expect(fcntl(reuser.fd.rawValue, F_GETFD) >= 0, "the second close() closed \(number) again")
            try reuser.signal()
            #expect(try reuser.drain() == 1)

            do {
                let scoped = try memory.fd.duplicate()
                #expect(scoped.isOpen && memfdDescriptorCount(named: name) == 2)
            }
            #expect(memfdDescriptorCount(named: name) == 1, "deinit closed the duplicate")
            memory.unmap()
            reuser.close()
            #expect(memfdDescriptorCount(named: name) == 0)
            #expect(try openDescriptorCount(referringTo: [reuserIdentity]) == 0)
        }

        @Test("GHT-OS-02: a wait interrupted by signals is retried in the seam and still ends at its deadline")
        func interruptedWait() throws {
            installInterruptHandler()
            let before = interrupts.load(ordering: .relaxed)
            let notifier = try Doorbell()
            let poller = try Poller()
            try poller.add(notifier.fd, token: 7)
            let waiter = TestThread { () -> (Bool, UInt64, Bool, UInt64) in
                unblockInterruptSignal()
                let start = SystemClock.monotonic.milliseconds
                let ready = (try? notifier.wait(timeoutMilliseconds: 400)) ?? true
                let middle = SystemClock.monotonic.milliseconds
                var events: [PollEvent] = []
                let count = (try? poller.wait(timeoutMilliseconds: 400, into: &events)) ?? -1
                return (ready, middle - start, count == 0, SystemClock.monotonic.milliseconds - middle)
            }
            // SIGUSR2 without SA_RESTART: poll and epoll_wait return EINTR at every one.
            for _ in 0..<14 {
                usleep(50_000)
                waiter.signal(SIGUSR2)
            }
            let (ready, firstWait, pollerTimedOut, secondWait) = waiter.join()
            #expect(interrupts.load(ordering: .relaxed) - before >= 10, "the handler ran")
            #expect(!ready && pollerTimedOut, "timeouts, not errors and not spurious readiness")
            // Restarting the full 400 ms after each of the signals would take well over 600 ms.
            #expect(firstWait >= 395 && firstWait < 650, "eventfd wait took \(firstWait) ms")
            #expect(secondWait >= 395 && secondWait < 650, "epoll wait took \(secondWait) ms")
        }
    }
}

private let interrupts = Atomic<Int>(0)

/// A no-op SIGUSR2 handler installed without SA_RESTART, so that it interrupts system calls.
private func installInterruptHandler() {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { _ in interrupts.wrappingAdd(1, ordering: .relaxed) }
    sigemptyset(&action.sa_mask)
    action.sa_flags = 0
    sigaction(SIGUSR2, &action, nil)
}

/// Threads inherit their creator's signal mask, and the test runner's threads may block
/// SIGUSR2.
private func unblockInterruptSignal() {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGUSR2)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
}
