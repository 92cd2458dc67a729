import Testing
import VirtioConformance
import VirtioCore
import VirtioDevices
import VirtioGrants
@testable import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem
import VhostUser

/// A back-end that ignores the protocol (Spec/hostile-peers.md §5): the scripted device keeps
/// every file the real ``FrontEnd`` sends it, and the tests attack those files with raw system
/// calls, as a back-end process running someone else's code would. Each attempt must fail.
@Suite("Against a hostile back-end", .tags(.transport), .serialized)
struct HostileBackEndTests {
    /// A front-end over a scripted device, initialized, with the files the device received.
    static func connected(_ configuration: FrontEndConfiguration = .small) throws -> (FrontEnd, ScriptedVhostUserBackEnd) {
        let (frontEnd, device) = try ScriptedVhostUserBackEnd.frontEnd(configuration: configuration)
        try frontEnd.initialize()
        return (frontEnd, device)
    }

    /// The files of the memory table the device received (readable region first).
    static func memoryFiles(_ device: ScriptedVhostUserBackEnd) -> [Int32] {
        device.receivedFiles.filter { $0.request == .setMemoryTable }.sorted { $0.index < $1.index }.map(\.fd.rawValue)
    }

    static func fileSize(_ fd: Int32) -> Int {
        var info = stat()
        return fstat(fd, &info) == 0 ? Int(info.st_size) : -1
    }

    /// The identity of the file behind `fd` (device and inode).
    static func identity(_ fd: Int32) -> [UInt64] {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return [] }
        return [UInt64(info.st_dev), UInt64(info.st_ino)]
    }

    /// Reads the whole file as a hostile back-end would: a fresh read-only shared mapping.
    static func contents(_ fd: Int32) -> [UInt8] {
        let size = fileSize(fd)
        guard size > 0, let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else { return [] }
        defer { munmap(p, size) }
        return Array(UnsafeRawBufferPointer(start: p, count: size))
    }

    static let secret: [UInt8] = Array("guest secret: do not leak 0123456789".utf8)

    static func holdsSecret(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= secret.count else { return false }
        return (0...(bytes.count - secret.count)).contains { i in bytes[i..<(i + secret.count)].elementsEqual(secret) }
    }

    @Test("GHT-HBE-03: the back-end's files of device-readable pages refuse every write: a shared writable mmap, a writable mprotect, write(), and truncation fail; every read-only grant is in that file")
    func readOnlyGrantsCannotBeWritten() throws {
        let (frontEnd, device) = try Self.connected()
        defer { frontEnd.close(); _ = device.finish() }
        let files = Self.memoryFiles(device)
        try #require(files.count == 2)
        let readable = files[0], size = Self.fileSize(readable)
        #expect(size == frontEnd.pool.readablePages * GrantHandle.pageSize)

        let writable = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, readable, 0)
        #expect(writable == MAP_FAILED && errno == EPERM, "mmap(PROT_WRITE, MAP_SHARED) must fail with EPERM")
        if let writable, writable != MAP_FAILED { munmap(writable, size) }

        let readOnly = try #require(mmap(nil, size, PROT_READ, MAP_SHARED, readable, 0))
        try #require(readOnly != MAP_FAILED)
        #expect(mprotect(readOnly, size, PROT_READ | PROT_WRITE) == -1, "a read-only mapping cannot be made writable")
        munmap(readOnly, size)

        var byte: UInt8 = 0xAA
        #expect(pwrite(readable, &byte, 1, 0) == -1 && errno == EPERM, "write() must fail with EPERM")
        #expect(ftruncate(readable, 0) == -1 && errno == EPERM, "the file cannot shrink")
        #expect(ftruncate(readable, off_t(size * 2)) == -1 && errno == EPERM, "nor grow")
        // A second open of the same file (what /proc/<pid>/fd/N gives) is sealed too.
        let reopened = open("/proc/self/fd/\(readable)", O_RDWR)
        if reopened >= 0 {
            #expect(pwrite(reopened, &byte, 1, 0) == -1 && errno == EPERM)
            close(reopened)
        }

        // Every read-only grant names a frame in the sealed file, every writable one a frame past it.
        let grants = try #require(frontEnd.grants)
        var readOnlyCount = 0
        for r in GrantReference.reservedCount..<grants.entries.count {
            let e = grants.entry(GrantReference(UInt32(r)))
            guard e.flags.contains(.permitAccess) else { continue }
            let inReadable = Int(e.frame) < frontEnd.pool.readablePages
            #expect(inReadable == e.flags.contains(.readOnly), "reference \(r) frame \(e.frame)")
            if inReadable { readOnlyCount += 1 }
        }
        #expect(readOnlyCount > 0)
    }

    @Test("GHT-HBE-04: once the front-end ends its grants (reset, close), a back-end that kept the files and reads every page finds only zeros, never a request's bytes")
    func endedGrantsHoldNothing() throws {
        let (frontEnd, device) = try Self.connected()
        let q = frontEnd.queues[0]
        try q.submit(Self.secret, replyCapacity: 64)
        try q.publish()
        let files = Self.memoryFiles(device)
        try #require(files.count == 2)
        #expect(Self.holdsSecret(Self.contents(files[0])), "granted and in flight, the request is the back-end's to read")
        try frontEnd.reset()
        #expect(!Self.holdsSecret(Self.contents(files[0])), "a request abandoned by a reset is zeroed")
        try frontEnd.queues[0].submit(Self.secret, replyCapacity: 64)
        try frontEnd.queues[0].publish()
        frontEnd.close()
        _ = device.finish()
        for fd in files {
            let bytes = Self.contents(fd)
            #expect(!bytes.isEmpty && bytes.allSatisfy { $0 == 0 }, "an ungranted page holds nothing")
        }
    }

    @Test("GHT-HBE-06, GHT-HBE-02: after each completion the caller reads the reply from private memory, and with scrubbing on the request and reply slots in the shared files are zero")
    func completedSlotsAreScrubbed() throws {
        let path = temporarySocketPath("scrub")
        let backEnd = try BackEnd(socketPath: path) { ChecksumEchoDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        for mode in [FrontEndConfiguration.AddressMode.grants, .guestPhysical] {
            var configuration = FrontEndConfiguration.small
            configuration.mode = mode
            configuration.scrubsCompletedSlots = true
            let frontEnd = try FrontEnd.connect(socketPath: path, configuration: configuration)
            let q = frontEnd.queues[0]
            let shared = [frontEnd.pool.readable.range, frontEnd.pool.writable.range]
            for _ in 0..<3 {
                try q.submit(Self.secret, replyCapacity: 8 + Self.secret.count)
                try q.publish()
                var seen = 0
                while seen == 0 {
                    seen = try q.waitForCompletions { _, reply in
                        let start = UInt(bitPattern: reply.baseAddress)
                        #expect(!shared.contains { start >= $0.startAddress && start < $0.startAddress + UInt($0.count) },
                                "the reply is shown from memory the back-end cannot reach")
                        #expect(reply.dropFirst(8).elementsEqual(Self.secret))
                    }
                }
                #expect(q.requests.host.withUnsafeBytes { $0.allSatisfy { $0 == 0 } }, "\(mode): request slots zeroed")
                #expect(q.replies.host.withUnsafeBytes { $0.allSatisfy { $0 == 0 } }, "\(mode): reply slots zeroed")
            }
            frontEnd.close()
        }
    }

    @Test("GHT-HBE-01: two front-end connections share no file: a back-end receives only its own connection's pool and grant table, never the other's")
    func poolsAreNotShared() throws {
        let (first, firstDevice) = try Self.connected()
        let (second, secondDevice) = try Self.connected()
        defer {
            first.close(); second.close()
            _ = firstDevice.finish(); _ = secondDevice.finish()
        }
        func files(of f: FrontEnd) -> Set<[UInt64]> {
            var fds = [f.pool.readable.fd.rawValue, f.pool.writable.fd.rawValue]
            if let t = f.grantTableMemory { fds.append(t.fd.rawValue) }
            return Set(fds.map(Self.identity))
        }
        let received = Set(firstDevice.receivedFiles.map { Self.identity($0.fd.rawValue) })
        #expect(files(of: first).isSubset(of: received), "the first back-end has its own pool and table")
        #expect(received.isDisjoint(with: files(of: second)), "and nothing of the second connection's")
        #expect(files(of: first).isDisjoint(with: files(of: second)))
        let secondReceived = Set(secondDevice.receivedFiles.map { Self.identity($0.fd.rawValue) })
        #expect(secondReceived.isDisjoint(with: files(of: first)))
    }

    @Test("GHT-HBE-05: a front-end's region that refuses writes is accepted read-only; an IOTLB update may map it for reading, never for writing")
    func readOnlyRegionsInIOVAMode() throws {
        let server = try TestBackEnd("hbe05")
        let client = try RawVhostUserClient(path: server.path)
        defer { client.close() }
        try client.negotiate([.replyAck, .status, .config])
        let sealed = try SharedMemory.createWritableOnlyHere(name: "hbe-iova", size: 4 * GrantHandle.pageSize)
        let start = UInt64(sealed.range.startAddress)
        let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(sealed.size), userAddress: start, mmapOffset: 0)
        #expect(try client.ack(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: [sealed.fd.rawValue]).isSuccess)
        for permission in [VhostUserIOTLBPermission.readWrite, .writeOnly] {
            try client.send(.iotlb(.update(iova: 0, size: 4096, userAddress: start, permission: permission)))
            #expect(try client.u64Reply(request: 22) != 0, "\(permission) into a read-only region")
        }
        try client.send(.iotlb(.update(iova: 0, size: 4096, userAddress: start, permission: .readOnly)))
        #expect(try client.u64Reply(request: 22) == 0)
    }

    @Test("GHT-HBE-05: a back-end maps a region whose file refuses writes read-only and faults device writes into it (readOnly), in guest-physical and grant translation, instead of storing into it")
    func readOnlyRegionsFaultWrites() throws {
        let page = GrantHandle.pageSize
        let sealed = try SharedMemory.createWritableOnlyHere(name: "hbe-sealed", size: 2 * page)
        #expect(try sealed.seals().isSuperset(of: [.futureWrite, .shrink, .grow, .seal]))
        let peer = try SharedMemory.mapAllowingReadOnly(fd: try sealed.fd.duplicate(), size: 2 * page)
        #expect(!peer.writable)
        let unsealed = try SharedMemory.create(name: "hbe-open", size: page)
        let open = try SharedMemory.mapAllowingReadOnly(fd: try unsealed.fd.duplicate(), size: page)
        #expect(open.writable)

        let regions = try RegionMapTranslator(regions: [MappedRegion(start: 0, range: peer.memory.range, writable: false),
                                                        MappedRegion(start: UInt64(2 * page), range: open.memory.range)])
        #expect(regions.resolve(16, length: 8, access: .write).faultKind == .readOnly)
        #expect(regions.resolve(16, length: 8, access: .read).succeeded)
        #expect(regions.resolve(UInt64(2 * page), length: 8, access: .write).succeeded)

        // A hostile granter grants a frame of the sealed file writable: the mapper refuses it.
        let tableMemory = try SharedMemory.create(name: "hbe-table", size: page)
        let granter = GrantTable(table: tableMemory.range, domain: DomainID(1), frameCount: 3)
        let ref = try granter.grant(frame: 1, to: DomainID(0), readOnly: false)
        let other = try granter.grant(frame: 2, to: DomainID(0), readOnly: false)
        let frames = try AdjacentMapping([.init(memory: peer.memory, writable: false), .init(memory: open.memory, writable: true)])
        let mapper = GrantMapper(table: tableMemory.range, granter: DomainID(1), frames: frames.range, domain: DomainID(0),
                                 owners: [frames], readOnlyFrames: [0..<2])
        #expect(throws: GrantFault.readOnly(ref)) { try mapper.map(ref, access: .write) }
        let read = try mapper.map(ref, access: .read)
        try mapper.unmap(read)
        let write = try mapper.map(other, access: .write)
        try mapper.unmap(write)
    }
}
