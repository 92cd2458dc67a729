/// Why a read of the device configuration space was refused (GHT-EMB-03).
public enum ConfigurationSpaceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The window `offset ..< offset + count` does not start inside the space of `size` bytes,
    /// or is not a window at all (a negative offset or count, an end past `Int.max`).
    case outOfRange(offset: Int, count: Int, size: Int)
    /// The device answered a window of `count` bytes with `returned` bytes (a device bug the
    /// back-end refuses to pass on).
    case wrongLength(count: Int, returned: Int)

    public var description: String {
        switch self {
        case .outOfRange(let offset, let count, let size):
            return "configuration window of \(count) bytes at offset \(offset) outside a space of \(size) bytes"
        case .wrongLength(let count, let returned):
            return "the device answered a configuration read of \(count) bytes with \(returned)"
        }
    }
}

/// A device configuration space held as one byte image (VIRTIO 1.2 §2.5: little-endian fields
/// at fixed offsets), read by window as vhost-user's GET_CONFIG asks (offset, size).
///
/// The default ``VirtioDevice/readConfig(offset:count:)`` serves ``VirtioDevice/readConfig()``'s
/// image through this type; a device with a large or live space answers windows itself.
public struct ConfigurationSpace: Sendable, Equatable {
    /// The whole space.
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The size of the space in bytes.
    public var size: Int { bytes.count }

    /// `count` bytes at `offset` (GHT-EMB-03).
    ///
    /// A window must start inside the space; the part of it past the end reads as zeros.
    /// (A front-end sizes its read by its own idea of the device's features: QEMU 7.2's
    /// vhost-user-blk asks for the configuration size of every feature it may offer, which can
    /// be longer than what the device has. VIRTIO 1.2 §2.5 makes the fields of features not
    /// offered meaningless, so zeros are a faithful answer.) An empty window reads nothing.
    ///
    /// - Throws: ``ConfigurationSpaceError/outOfRange(offset:count:size:)`` for a negative
    ///   offset or count, an end that overflows, or a non-empty window starting at or past the
    ///   end of the space (every window of a device without a configuration space).
    public func read(offset: Int, count: Int) throws(ConfigurationSpaceError) -> [UInt8] {
        guard offset >= 0, count >= 0, !offset.addingReportingOverflow(count).overflow else {
            throw .outOfRange(offset: offset, count: count, size: size)
        }
        if count == 0 { return [] }
        guard offset < size else { throw .outOfRange(offset: offset, count: count, size: size) }
        var window = [UInt8](repeating: 0, count: count)
        let available = min(count, size - offset)
        for i in 0..<available { window[i] = bytes[offset + i] }
        return window
    }
}
