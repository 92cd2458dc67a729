import VirtioCore
import VirtioDevices
import VirtioTransport

/// The device model of virtio-net (VIRTIO 1.2 §5.1) shared in turns: a guest transmits only
/// frames from its own address and no longer than the link allows (GHT-MDL-04); receive
/// buffers are legitimate (the device fills them with frames addressed to the guest).
public struct NetworkDeviceModel: DeviceModel {
    /// A guest's identity on the link.
    public struct Rules: Sendable, Equatable {
        /// The source address every transmitted frame must carry.
        public var address: EthernetAddress
        /// The longest frame (header excluded), 1514 for a 1500-byte MTU.
        public var maxFrame: Int

        public init(address: EthernetAddress, maxFrame: Int = 1514) {
            self.address = address
            self.maxFrame = maxFrame
        }
    }

    /// The transmit queue (receive is queue 0).
    public static let transmitQueue = 1

    public private(set) var rules: Rules?
    public private(set) var inFlight = 0
    /// The source address of the last frame checked, as the device staged it.
    private var stagedSource: UInt64 = 0

    public init() {}

    /// The loaded address, packed once at load (the per-frame check compares one word).
    private var expectedSource: UInt64 = 0

    public mutating func load(_ rules: Rules?) {
        self.rules = rules
        expectedSource = rules.map { Self.packed($0.address) } ?? 0
    }

    public mutating func start(_ request: inout ModelRequest) -> ModelVerdict {
        guard let rules else { return .denied(rule: "GHT-MDL-02", reason: "no guest context loaded") }
        if request.queue == Self.transmitQueue {
            let frame = request.readableBytes - NetworkHeader.byteCount
            guard frame <= rules.maxFrame else {
                return .denied(rule: "GHT-MDL-04", reason: "a \(frame)-byte frame exceeds \(rules.maxFrame)")
            }
            // A frame too short for an Ethernet header is the device's to drop (GHT-NET-05).
            if frame >= 14 {
                // GHT-ONE-03: the source address is checked in, and sent from, the private copy.
                var reader = request.stage(upTo: NetworkHeader.byteCount + 12)
                reader.skip(NetworkHeader.byteCount + 6)
                guard let low = try? reader.read(UInt32.self), let high = try? reader.read(UInt16.self) else {
                    return .denied(rule: "GHT-MDL-04", reason: "unreadable source address")
                }
                stagedSource = UInt64(low) | UInt64(high) << 32
                guard stagedSource == expectedSource else {
                    return .denied(rule: "GHT-MDL-04", reason: "source \(Self.unpacked(stagedSource)) is not \(rules.address)")
                }
            }
        }
        inFlight += 1
        return .allowed
    }

    public mutating func finish(queue: Int) { inFlight -= 1 }
    public var isReusable: Bool { inFlight == 0 }
    public mutating func reset() { self = NetworkDeviceModel() }
    public var residue: [UInt8] { withUnsafeBytes(of: stagedSource.littleEndian) { Array($0.prefix(6)) } }

    /// The address as the little-endian loads of its 6 bytes see it.
    static func packed(_ a: EthernetAddress) -> UInt64 {
        a.array.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    static func unpacked(_ v: UInt64) -> EthernetAddress {
        EthernetAddress(UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v >> 16),
                        UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 32), UInt8(truncatingIfNeeded: v >> 40))
    }

    /// A denied frame is dropped: the buffer returns unused.
    public static func completeDenied(_ i: Int, in batch: inout RequestBatch) { batch.complete(i, usedLength: 0) }
}
