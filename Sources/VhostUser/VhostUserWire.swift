// Little-endian field access for vhost-user payloads.
//
// vhost-user.rst says "machine native byte order"; every platform this transport runs on is
// little-endian, and we fix the wire to little-endian so that the encoding is defined on its
// own (GHT-VU-01). Readers never look past the bytes they were given: every decoder checks
// the payload size before it reads a field.

/// Appends little-endian fields to a byte array.
package struct VhostUserWriter {
    package var bytes: [UInt8]

    package init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    package mutating func u8(_ value: UInt8) { bytes.append(value) }

    package mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value &>> 8))
    }

    package mutating func u32(_ value: UInt32) {
        for shift in stride(from: UInt32(0), to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value &>> shift)) }
    }

    package mutating func u64(_ value: UInt64) {
        for shift in stride(from: UInt64(0), to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value &>> shift)) }
    }

    package mutating func zeros(_ count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }

    package mutating func raw(_ data: some Sequence<UInt8>) { bytes.append(contentsOf: data) }
}

/// Reads little-endian fields from a payload whose size the caller has already checked.
package struct VhostUserReader {
    package let bytes: [UInt8]
    private(set) var offset = 0

    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The bytes not read yet.
    package var remaining: Int { bytes.count - offset }

    package mutating func u8() -> UInt8 {
        defer { offset += 1 }
        return bytes[offset]
    }

    package mutating func u16() -> UInt16 {
        defer { offset += 2 }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) &<< 8
    }

    package mutating func u32() -> UInt32 {
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(bytes[offset + i]) &<< UInt32(8 * i) }
        offset += 4
        return value
    }

    package mutating func u64() -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(bytes[offset + i]) &<< UInt64(8 * i) }
        offset += 8
        return value
    }

    package mutating func skip(_ count: Int) { offset += count }

    package mutating func raw(_ count: Int) -> [UInt8] {
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }
}

/// Range arithmetic shared by the field checks.
package enum VhostUserRange {
    /// True if `[start, start + length)` ends at or below 2^64 (an end of exactly 2^64 is
    /// allowed, as in ``IOVASpace``). A zero length always fits.
    package static func fits(start: UInt64, length: UInt64) -> Bool {
        length == 0 || start <= UInt64.max - (length - 1)
    }

    /// True if `[offset, offset + length)` lies within the file offsets `off_t` can express
    /// (0 through 2^63 − 1), so that `mmap` of it cannot overflow.
    package static func fitsFileOffset(offset: UInt64, length: UInt64) -> Bool {
        let limit = UInt64(Int64.max)
        return offset <= limit && length <= limit - offset
    }

    /// True if two non-empty ranges share a byte. Ends may be 2^64.
    package static func overlap(_ a: UInt64, _ aLength: UInt64, _ b: UInt64, _ bLength: UInt64) -> Bool {
        let aLast = a &+ (aLength - 1)
        let bLast = b &+ (bLength - 1)
        return a <= bLast && b <= aLast
    }
}
