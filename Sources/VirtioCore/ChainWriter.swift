/// Copies bytes into the device-writable part of a ``DescriptorChain``, across descriptor
/// boundaries at any split, and counts them for the used length (USD-DEV-02).
///
/// The writer starts after the last device-readable segment, so it can never write a
/// readable buffer (SPL-DEV-01); each segment is translated with write access, so a
/// read-only grant faults instead of being written.
@frozen
public struct ChainWriter<Memory: MemoryTranslator> {
    @usableFromInline let memory: Memory
    @usableFromInline var cursor: ChainSegments.Iterator
    @usableFromInline var segmentsLeft: Int
    @usableFromInline var address: UInt64 = 0
    @usableFromInline var segmentLeft: Int = 0
    /// The total number of writable bytes in the chain.
    public let capacity: Int
    @usableFromInline var produced: Int = 0

    /// The bytes written so far: the used length to report.
    @inlinable
    public var bytesWritten: Int { produced }

    /// A writer over `chain`'s writable segments, translated through `memory`.
    @inlinable
    public init(chain: DescriptorChain, memory: Memory) {
        self.memory = memory
        cursor = chain.segments.makeIterator()
        cursor.advance(by: chain.readableSegmentCount)
        segmentsLeft = chain.segmentCount &- chain.readableSegmentCount
        capacity = Int(chain.writableLength)
    }

    /// The writable bytes not yet written.
    @inlinable
    public var remaining: Int { capacity &- bytesWritten }

    /// The used length to report: the bytes written, as the used ring's 32-bit field.
    @inlinable
    public var usedLength: UInt32 { UInt32(truncatingIfNeeded: Swift.min(bytesWritten, Int(UInt32.max))) }

    @inlinable
    mutating func nextSegment() -> Bool {
        while segmentLeft == 0 {
            guard segmentsLeft > 0 else { return false }
            segmentsLeft &-= 1
            let s = cursor.next().unsafelyUnwrapped
            address = s.address
            segmentLeft = Int(s.length)
        }
        return true
    }

    /// Copies up to `bytes.count` bytes from `bytes`; returns how many (fewer only at the end).
    @inlinable
    @discardableResult
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(ChainAccessError) -> Int {
        var done = 0
        while done < bytes.count, nextSegment() {
            let want = Swift.min(segmentLeft, bytes.count &- done)
            let range: HostRange
            do {
                range = try memory.translate(address, length: want, access: .write)
            } catch {
                throw .fault(error)
            }
            let n = range.copyBytes(from: UnsafeRawBufferPointer(rebasing: bytes[done...]))
            done &+= n
            address &+= UInt64(n)
            segmentLeft &-= n
            produced &+= n
        }
        return done
    }

    /// Writes all of `bytes`, or throws without writing when they do not fit.
    @inlinable
    public mutating func write(contentsOf bytes: [UInt8]) throws(ChainAccessError) {
        guard bytes.count <= remaining else { throw .endOfChain(needed: bytes.count, available: remaining) }
        var failure: ChainAccessError?
        bytes.withUnsafeBytes { b in
            do throws(ChainAccessError) { _ = try self.write(b) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Writes a little-endian integer, or throws without writing when it does not fit.
    @inlinable
    public mutating func write<T: FixedWidthInteger>(_ value: T) throws(ChainAccessError) {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw .endOfChain(needed: size, available: remaining) }
        var failure: ChainAccessError?
        withUnsafeBytes(of: value.littleEndian) { b in
            do throws(ChainAccessError) { _ = try self.write(b) } catch { failure = error }
        }
        if let failure { throw failure }
    }
}
