import VirtioCore

/// virtio-net feature bits (VIRTIO 1.2 §5.1.3) this device uses.
extension VirtioFeatures {
    /// MAC (5): the device's address is in the configuration space.
    public static var networkMAC: VirtioFeatures { VirtioFeatures(bit: 5) }
    /// STATUS (16): the configuration space's `status` field reports the link.
    public static var networkStatus: VirtioFeatures { VirtioFeatures(bit: 16) }
}

/// A 48-bit Ethernet (MAC) address.
public struct EthernetAddress: Hashable, Sendable, CustomStringConvertible {
    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        bytes = (b0, b1, b2, b3, b4, b5)
    }

    /// The address in the first 6 of `array` (a frame's destination, or at `offset` its source).
    public init?(_ array: some Collection<UInt8>, offset: Int = 0) {
        let a = Array(array.dropFirst(offset).prefix(6))
        guard a.count == 6 else { return nil }
        self.init(a[0], a[1], a[2], a[3], a[4], a[5])
    }

    /// `52:54:00:12:34:56`.
    public init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 6 else { return nil }
        var a: [UInt8] = []
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            a.append(b)
        }
        self.init(a[0], a[1], a[2], a[3], a[4], a[5])
    }

    /// The address at `offset` of `raw` (a frame's header, read without allocating).
    init(_ raw: UnsafeRawBufferPointer, at offset: Int) {
        self.init(raw[offset], raw[offset + 1], raw[offset + 2], raw[offset + 3], raw[offset + 4], raw[offset + 5])
    }

    public static let broadcast = EthernetAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff)

    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5] }
    /// Group (multicast and broadcast) addresses have the low bit of the first byte set.
    public var isGroup: Bool { bytes.0 & 1 != 0 }

    /// The six bytes in one integer: compared and hashed per frame by the switch, so without
    /// an array.
    var packed: UInt64 {
        UInt64(bytes.0) << 40 | UInt64(bytes.1) << 32 | UInt64(bytes.2) << 24 | UInt64(bytes.3) << 16 | UInt64(bytes.4) << 8 | UInt64(bytes.5)
    }

    public static func == (a: Self, b: Self) -> Bool { a.packed == b.packed }
    public func hash(into hasher: inout Hasher) { hasher.combine(packed) }

    public var description: String { array.map { String($0, radix: 16).leftPadded(2) }.joined(separator: ":") }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// The header in front of every frame on a virtio-net queue (VIRTIO 1.2 §5.1.6,
/// `struct virtio_net_hdr`): 12 bytes once VERSION_1 is negotiated, `num_buffers` included.
/// This device negotiates no offload, so the header it writes is zero but for
/// `num_buffers` = 1, and the header it reads is skipped.
public enum NetworkHeader {
    public static let byteCount = 12
    /// Received frames: flags 0, GSO none, lengths 0, `num_buffers` 1 (le16 at offset 10).
    public static let receive: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
}

/// The virtio-net configuration space (VIRTIO 1.2 §5.1.4): mac, le16 status, le16
/// max_virtqueue_pairs, le16 mtu.
public struct NetworkConfigurationSpace: Hashable, Sendable {
    public static let byteCount = 12
    /// `VIRTIO_NET_S_LINK_UP`.
    public static let linkUp: UInt16 = 1

    public var mac: EthernetAddress
    public var status: UInt16
    public var queuePairs: UInt16
    public var mtu: UInt16

    public var bytes: [UInt8] {
        mac.array + withUnsafeBytes(of: (status.littleEndian, queuePairs.littleEndian, mtu.littleEndian)) { Array($0) }
    }
}
