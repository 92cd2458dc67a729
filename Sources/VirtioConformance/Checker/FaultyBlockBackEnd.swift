import VirtioCore
import VirtioSystem
import VirtioTransport
import VhostUser

/// A deliberately faulty vhost-user-blk back-end, the checker's own test target: a minimal
/// device over 2048 zero sectors that answers the handshake and serves queue 0, with one fault
/// on demand. ``BackEndChecker`` must catch each fault with the class of check it belongs to
/// (GHT-CHK-07..11, GHT-CHK-17, GHT-CHK-18). Never use it as a device.
public final class FaultyBlockBackEnd: @unchecked Sendable {
    public enum Fault: String, Sendable, CaseIterable {
        /// None: serves correctly (the checker must find it clean).
        case none
        /// Posts used ids that were never made available (the chain's head + 1).
        case badUsedID = "bad-used-id"
        /// Reports used lengths 100 bytes beyond the chain's writable capacity.
        case longUsedLength = "long-used-length"
        /// Crashes the process on an INDIRECT descriptor inside an indirect table.
        case crashOnNestedIndirect = "crash-nested-indirect"
        /// Never answers any message.
        case silent
        /// Reads past the capacity with status OK.
        case noCapacityCheck = "no-capacity-check"
        /// Writes the status byte into the request's header too (a device-readable buffer).
        case writeReadable = "write-readable"
    }

    public static let capacity: UInt64 = 2048
    private let listener: UnixSocket
    private let fault: Fault

    /// Listens on `socketPath`.
    public init(socketPath: String, fault: Fault) throws(UnixSocketError) {
        listener = try UnixSocket.listen(path: socketPath)
        self.fault = fault
    }

    /// Serves connections one after the other until the listener is closed by ``stop()``.
    public func serve() {
        while let socket = try? listener.accept() {
            Session(socket: socket, fault: fault).run()
            socket.close()
        }
    }

    public func stop() { try? listener.shutdown(); listener.close() }

    /// One connection: the memory it was given, queue 0's addresses and positions.
    private final class Session {
        let channel: VhostUserChannel
        let fault: Fault
        var regions: [(gpa: UInt64, user: UInt64, size: UInt64, memory: SharedMemory)] = []
        var queueSize = 0, desc: UInt64 = 0, avail: UInt64 = 0, used: UInt64 = 0
        var lastAvail: UInt16 = 0, usedIndex: UInt16 = 0
        var running = false
        var call: Doorbell?
        /// The disk: 2048 sectors in memory.
        var disk = [UInt8](repeating: 0, count: Int(FaultyBlockBackEnd.capacity) * 512)

        init(socket: UnixSocket, fault: Fault) {
            try? socket.setReceiveTimeout(milliseconds: 2)
            channel = VhostUserChannel(socket: socket)
            self.fault = fault
        }

        func run() {
            defer { for r in regions { r.memory.unmap() } }
            while true {
                do {
                    let received = try channel.receive()
                    if fault == .silent { continue }
                    handle(received)
                } catch {
                    if case .socket(.timedOut) = error {
                        if running { serviceRing() }
                        continue
                    }
                    return
                }
            }
        }

        func reply(_ request: UInt32, _ payload: [UInt8]) {
            try? channel.send(VhostUserHeader.reply(request, payloadSize: payload.count).encoded() + payload, fds: [])
        }

        func handle(_ received: VhostUserChannel.Received) {
            let h = received.frame.header
            var answered = false
            switch (try? VhostUserCodec.decode(header: h, payload: received.frame.payload, fileDescriptorCount: received.fds.count)) ?? .unsupported(.getFeatures, payload: []) {
            case .getFeatures:
                reply(h.request, VhostUserMessage.u64((1 << 32) | (1 << 30) | (1 << 28) | (1 << 9))); answered = true
            case .getProtocolFeatures:
                reply(h.request, VhostUserMessage.u64(VhostUserProtocolFeatures([.replyAck, .config]).rawValue)); answered = true
            case .getConfig(let config):
                var data = [UInt8](repeating: 0, count: config.data.count)
                let capacity = VhostUserMessage.u64(FaultyBlockBackEnd.capacity)
                for i in 0..<min(8, data.count) where config.offset == 0 { data[i] = capacity[i] }
                reply(h.request, VhostUserConfig(offset: config.offset, data: data).encoded()); answered = true
            case .setMemoryTable(let table):
                for r in regions { r.memory.unmap() }
                regions = []
                for (i, region) in table.regions.enumerated() {
                    guard let fd = try? received.fds[i].duplicate(),
                          let m = try? SharedMemory.map(fd: fd, size: Int(region.size), offset: Int(region.mmapOffset)) else { continue }
                    regions.append((region.guestAddress, region.userAddress, region.size, m))
                }
            case .setVringNum(let s): queueSize = Int(s.num)
            case .setVringBase(let s): lastAvail = UInt16(truncatingIfNeeded: s.num)
            case .setVringAddress(let a): desc = a.descriptor; avail = a.available; used = a.used
            case .setVringCall:
                call = received.fds.first.flatMap { try? Doorbell(adopting: $0.duplicate()) }
            case .setVringKick:
                if let p = user(used + 2, 2) { usedIndex = UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)) }
                running = queueSize > 0
            case .getVringBase:
                running = false
                reply(h.request, VhostUserVringState(index: 0, num: UInt32(lastAvail)).encoded()); answered = true
            default: break
            }
            for fd in received.fds { fd.close() }
            if h.flags.contains(.needReply) && !answered { reply(h.request, VhostUserMessage.u64(0)) }
        }

        func user(_ address: UInt64, _ count: UInt64) -> UnsafeMutableRawPointer? {
            for r in regions where address >= r.user && address + count <= r.user + r.size {
                return UnsafeMutableRawPointer(bitPattern: r.memory.range.startAddress)! + Int(address - r.user)
            }
            return nil
        }

        func guest(_ address: UInt64, _ count: UInt64) -> UnsafeMutableRawPointer? {
            for r in regions where address >= r.gpa && address &+ count <= r.gpa + r.size && count <= r.size {
                return UnsafeMutableRawPointer(bitPattern: r.memory.range.startAddress)! + Int(address - r.gpa)
            }
            return nil
        }

        /// Uses every chain made available (as a device with the fault would).
        func serviceRing() {
            guard let availRing = user(avail, UInt64(4 + 2 * queueSize)), let usedRing = user(used, UInt64(4 + 8 * queueSize)),
                  let table = user(desc, UInt64(16 * queueSize)) else { return }
            let index = UInt16(littleEndian: availRing.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            guard Int(index &- lastAvail) <= queueSize else { running = false; return }   // GHT-VAL-01: broken
            while lastAvail != index {
                let head = UInt16(littleEndian: availRing.loadUnaligned(fromByteOffset: 4 + 2 * (Int(lastAvail) % queueSize), as: UInt16.self))
                lastAvail &+= 1
                guard Int(head) < queueSize, let written = process(head: head, table: table) else { running = false; return }
                let id = fault == .badUsedID ? (UInt32(head) + 1) % UInt32(queueSize) : UInt32(head)
                let length = fault == .longUsedLength ? written.capacity + 100 : written.length
                let slot = 4 + 8 * (Int(usedIndex) % queueSize)
                usedRing.storeBytes(of: id.littleEndian, toByteOffset: slot, as: UInt32.self)
                usedRing.storeBytes(of: length.littleEndian, toByteOffset: slot + 4, as: UInt32.self)
                usedIndex &+= 1
                usedRing.storeBytes(of: usedIndex.littleEndian, toByteOffset: 2, as: UInt16.self)
                if availRing.load(as: UInt8.self) & 1 == 0 { try? call?.signal() }
            }
        }

        /// Walks the chain at `head` (at most queue-size segments) and serves it as a blk request.
        func process(head: UInt16, table: UnsafeMutableRawPointer) -> (length: UInt32, capacity: UInt32)? {
            var readable: [UInt8] = []
            var writable: [(UnsafeMutableRawPointer, Int)] = []
            var current = table, index = Int(head), limit = queueSize, steps = 0, indirect = false
            while steps < limit {
                steps += 1
                let at = index * 16
                let address = UInt64(littleEndian: current.loadUnaligned(fromByteOffset: at, as: UInt64.self))
                let length = UInt32(littleEndian: current.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self))
                let flags = UInt16(littleEndian: current.loadUnaligned(fromByteOffset: at + 12, as: UInt16.self))
                let next = UInt16(littleEndian: current.loadUnaligned(fromByteOffset: at + 14, as: UInt16.self))
                if flags & 4 != 0 {
                    if indirect {
                        if fault == .crashOnNestedIndirect { fatalError("FaultyBlockBackEnd: nested indirect table") }
                        return nil
                    }
                    guard length % 16 == 0, length > 0, let t = guest(address, UInt64(length)) else { return nil }
                    current = t; index = 0; limit = Int(length / 16); steps = 0; indirect = true
                    continue
                }
                guard let p = guest(address, UInt64(length)) else { return nil }
                if flags & 2 != 0 { writable.append((p, Int(length))) } else { readable += UnsafeRawBufferPointer(start: p, count: Int(length)) }
                if fault == .writeReadable && flags & 2 == 0 && length > 0 { p.storeBytes(of: UInt8(0), toByteOffset: Int(length) - 1, as: UInt8.self) }
                guard flags & 1 != 0 else { break }
                index = Int(next)
                guard index < limit else { return nil }
            }
            let capacity = UInt32(writable.reduce(0) { $0 + $1.1 })
            guard readable.count >= 16, capacity >= 1 else { return (0, capacity) }
            let type = readable[0..<4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let sector = readable[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let data = Int(capacity) - 1
            var status: UInt8
            switch type {
            case 0: status = fault != .noCapacityCheck && (sector >= FaultyBlockBackEnd.capacity || UInt64(data / 512) > FaultyBlockBackEnd.capacity - sector) ? 1 : 0
            case 1:
                let count = (readable.count - 16) / 512
                status = sector < FaultyBlockBackEnd.capacity && UInt64(count) <= FaultyBlockBackEnd.capacity - sector ? 0 : 1
                if status == 0 { disk.replaceSubrange(Int(sector) * 512..<(Int(sector) + count) * 512, with: readable[16..<(16 + count * 512)]) }
            case 4: status = 0
            case 8: status = 0
            default: status = 2
            }
            var left = data
            var from = type == 0 && status == 0 ? Int(sector) * 512 : -1
            for (p, n) in writable {
                let k = min(n, left)
                if k > 0 && from >= 0 && from + k <= disk.count {
                    disk.withUnsafeBytes { p.copyMemory(from: $0.baseAddress! + from, byteCount: k) }
                    from += k
                } else if k > 0 {
                    p.initializeMemory(as: UInt8.self, repeating: 0, count: k)
                }
                left -= k
                if k < n { p.storeBytes(of: status, toByteOffset: k, as: UInt8.self) }
            }
            return (capacity, capacity)
        }
    }
}
