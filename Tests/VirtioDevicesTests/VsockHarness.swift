import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioSystem

#if canImport(Glibc)
import Glibc
#endif

/// A vsock device on a host of its own, driven as its guest would: packets go in through
/// transmit batches and come out of receive batches (``RequestBatch/testing``); the host side
/// is real unix sockets.
final class VsockHarness {
    static let guestCID: UInt64 = 3
    let socketPath = "/tmp/vg-vsk-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let host: VsockHost
    let device: VsockDevice
    let region = GuestMemoryRegion(size: 1 << 21)

    init(maxConnections: Int = 1024, bufferSize: UInt32 = 64 * 1024, connectTimeout: Duration = .seconds(2)) throws {
        host = try VsockHost(socketPath: socketPath)
        device = VsockDevice(guestCID: Self.guestCID, host: host, maxConnections: maxConnections, bufferSize: bufferSize,
                             connectTimeout: connectTimeout)
    }

    deinit { host.stop() }

    /// A header from the guest's port `guestPort` to the host's `hostPort`, advertising a
    /// guest buffer of `credit` bytes with `forwarded` taken out of it.
    static func packet(_ op: VsockOperation, guestPort: UInt32, hostPort: UInt32, length: Int = 0, flags: UInt32 = 0,
                       credit: UInt32 = 1 << 20, forwarded: UInt32 = 0) -> VsockHeader {
        VsockHeader(sourceCID: guestCID, destinationCID: VsockHeader.hostCID, sourcePort: guestPort, destinationPort: hostPort,
                    length: UInt32(length), op: op, flags: flags, bufferAllocation: credit, forwardCount: forwarded)
    }

    /// Transmits `header` and `payload`, the bytes split over descriptors of `split` bytes.
    func send(_ header: VsockHeader, _ payload: [UInt8] = [], split: Int = 1 << 20) {
        send(raw: header.bytes + payload, split: split)
    }

    func send(raw bytes: [UInt8], split: Int = 1 << 20) {
        region.write(bytes, at: 0)
        var fragments: [HostRange] = []
        var offset = 0
        while offset < bytes.count {
            let n = min(split, bytes.count - offset)
            fragments.append(region.range.slice(offset: offset, length: n))
            offset += n
        }
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<fragments.count, fragments.count..<fragments.count)])
        device.process(queue: VsockDevice.transmitQueue, batch: &batch)
        #expect(batch.usedLength(0) == 0)
    }

    /// One receive buffer of `capacity` bytes (split in two descriptors), if the device has a
    /// packet; the packet's header and payload.
    func receive(capacity: Int = VsockHeader.byteCount + 4096) -> (header: VsockHeader, payload: [UInt8])? {
        guard device.readyBuffers(queue: VsockDevice.receiveQueue) ?? 0 > 0 else { return nil }
        let base = 1 << 20, first = min(20, capacity)
        let fragments = [region.range.slice(offset: base, length: first), region.range.slice(offset: base + first, length: capacity - first)]
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<0, 0..<2)])
        device.process(queue: VsockDevice.receiveQueue, batch: &batch)
        let used = Int(batch.usedLength(0))
        guard used >= VsockHeader.byteCount else { return nil }
        let bytes = region.read(at: UInt64(base), count: used)
        guard let h = VsockHeader(bytes) else { return nil }
        #expect(Int(h.length) == used - VsockHeader.byteCount, "len is the payload's length")
        return (h, Array(bytes[VsockHeader.byteCount...]))
    }

    /// Receives until a packet matching `match` comes (other packets go to `skipped`), or two
    /// seconds pass: the host side is served by another thread.
    func awaitPacket(_ what: String = "packet", capacity: Int = VsockHeader.byteCount + 4096, skipped: ((VsockHeader, [UInt8]) -> Void)? = nil,
               _ match: (VsockHeader) -> Bool) -> (header: VsockHeader, payload: [UInt8])? {
        for _ in 0..<2000 {
            while let p = receive(capacity: capacity) {
                if match(p.header) { return p }
                skipped?(p.header, p.payload)
            }
            usleep(1000)
        }
        Issue.record("no \(what) within 2 s")
        return nil
    }

    /// A host program listening for the guest's connections to `port`.
    func listen(port: UInt32) throws -> UnixSocket { try UnixSocket.listen(path: host.path(forPort: port)) }

    /// Opens a connection from guest port `guestPort` to host port `hostPort`, accepted by
    /// `listener`; the host program's end.
    func connect(guestPort: UInt32, hostPort: UInt32, listener: UnixSocket, credit: UInt32 = 1 << 20) throws -> UnixSocket? {
        send(Self.packet(.request, guestPort: guestPort, hostPort: hostPort, credit: credit))
        let answer = awaitPacket("RESPONSE") { $0.destinationPort == guestPort }
        #expect(answer?.header.operation == .response)
        guard try listener.waitReadable(timeoutMilliseconds: 2000) else { return nil }
        return try listener.accept()
    }

    /// Reads exactly `count` bytes from a host program's socket within two seconds; fewer
    /// when the stream ends (or is reset) first.
    static func read(_ socket: UnixSocket, count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while out.count < count {
            guard try socket.waitReadable(timeoutMilliseconds: 2000) else { break }
            let want = min(buffer.count, count - out.count)
            let n: Int
            do {
                n = try buffer.withUnsafeMutableBytes { try socket.receive(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])).count }
            } catch {
                if case .system(let e)? = error as? UnixSocketError, e.errno == ECONNRESET { break }
                throw error
            }
            if n == 0 { break }
            out += buffer[0..<n]
        }
        return out
    }
}

/// Bytes 0, 1, ..., in a pattern that shows a reordering or a loss.
func vsockPattern(_ count: Int, seed: Int = 0) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 7) &+ ($0 >> 8) &+ seed) } }
