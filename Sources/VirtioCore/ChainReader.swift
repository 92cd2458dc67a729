/// Copies bytes out of the device-readable part of a ``DescriptorChain``, across descriptor
/// boundaries at any split (FRM-DEV-01: the device assumes nothing about how a request is
/// laid out over descriptors).
///
/// Each segment is translated with read access when it is reached, so a fault names the
/// exact segment; zero-length segments are skipped.
@frozen
public struct ChainReader<Memory: MemoryTranslator> {
    @usableFromInline let memory: Memory
    @usableFromInline var cursor: ChainSegments.Iterator
    @usableFromInline var segmentsLeft: Int
    @usableFromInline var address: UInt64 = 0
    @usableFromInline var segmentLeft: Int = 0
    /// The total number of readable bytes in the chain.
    public let length: Int
    @usableFromInline var consumed: Int = 0

    /// The bytes read (or skipped) so far.
    @inlinable
    public var bytesRead: Int { consumed }

    /// A reader over `chain`'s readable segments, translated through `memory`.
    @inlinable
    public init(chain: DescriptorChain, memory: Memory) {
        self.memory = memory
        cursor = chain.segments.makeIterator()
        segmentsLeft = chain.readableSegmentCount
        length = Int(chain.readableLength)
    }

    /// The readable bytes not yet consumed.
    @inlinable
    public var remaining: Int { length &- bytesRead }

    /// Moves to the next non-empty segment; returns `false` at the end of the readable part.
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

    /// Copies up to `buffer.count` bytes into `buffer`; returns how many (fewer only at the end).
    @inlinable
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(ChainAccessError) -> Int {
        var done = 0
        while done < buffer.count, nextSegment() {
            let want = Swift.min(segmentLeft, buffer.count &- done)
            let range: HostRange
            do {
                range = try memory.translate(address, length: want, access: .read)
            } catch {
                throw .fault(error)
            }
            let n = range.copyBytes(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            done &+= n
            address &+= UInt64(n)
            segmentLeft &-= n
            consumed &+= n
        }
        return done
    }

    /// Reads exactly `count` bytes.
    @inlinable
    public mutating func readBytes(_ count: Int) throws(ChainAccessError) -> [UInt8] {
        guard count <= remaining else { throw .endOfChain(needed: count, available: remaining) }
        var result = [UInt8](repeating: 0, count: count)
        var failure: ChainAccessError?
        result.withUnsafeMutableBytes { b in
            do throws(ChainAccessError) { _ = try self.read(into: b) } catch { failure = error }
        }
        if let failure { throw failure }
        return result
    }

    /// Reads a little-endian integer (virtio fields are little-endian with VERSION_1).
    @inlinable
    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(ChainAccessError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw .endOfChain(needed: size, available: remaining) }
        var value = T.zero
        var failure: ChainAccessError?
        withUnsafeMutableBytes(of: &value) { b in
            do throws(ChainAccessError) { _ = try self.read(into: b) } catch { failure = error }
        }
        if let failure { throw failure }
        return T(littleEndian: value)
    }

    /// Skips up to `count` bytes without touching memory; returns how many were skipped.
    @inlinable
    @discardableResult
    public mutating func skip(_ count: Int) -> Int {
        var done = 0
        while done < count, nextSegment() {
            let n = Swift.min(segmentLeft, count &- done)
            done &+= n
            address &+= UInt64(n)
            segmentLeft &-= n
            consumed &+= n
        }
        return done
    }
}
