import Synchronization

// The unsafe core of the packed ring: typed views of the descriptor ring and the two
// event-suppression areas in shared memory. As for the split ring, every shared field is
// reached through an atomic bound in place (one fetch per read); the word that holds a
// descriptor's flags is read with acquire and written with release, which is what makes a
// slot available or used (PKD-SUP-01, PKD-SUP-02).

/// The descriptor ring of a packed virtqueue (VIRTIO 1.2 §2.8.13).
@frozen @usableFromInline
package struct UnsafePackedDescriptorRing: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer
    /// N, the number of slots.
    @usableFromInline package let count: Int

    /// A view of `count` slots over `range`, which must hold 16·`count` bytes, 16-aligned.
    @inlinable
    package init(_ range: HostRange, count: Int) {
        precondition(range.count >= 16 &* count && range.isAligned(to: 16))
        base = range.base
        self.count = count
    }

    /// The flags of slot `slot` (with its len and id, from the same 64-bit word) with acquire
    /// ordering: if the flags say available (or used), the rest of the descriptor and the
    /// buffers written before it are visible.
    @inlinable @inline(__always)
    func loadWord1(_ slot: Int) -> UInt64 {
        UInt64(littleEndian: atomic64(base + ((slot &<< 4) &+ 8)).pointee.load(ordering: .acquiring))
    }

    /// The address word of slot `slot`, relaxed (read after ``loadWord1(_:)``).
    @inlinable @inline(__always)
    func loadAddress(_ slot: Int) -> UInt64 {
        UInt64(littleEndian: atomic64(base + (slot &<< 4)).pointee.load(ordering: .relaxed))
    }

    /// Reads slot `slot` once: the flags word with acquire, then the address.
    @inlinable
    package func load(_ slot: Int) -> PackedDescriptor {
        precondition(UInt(bitPattern: slot) < UInt(bitPattern: count), "slot out of ring")
        let w1 = loadWord1(slot)
        return PackedDescriptor(word0: loadAddress(slot).littleEndian, word1: w1.littleEndian)
    }

    /// Writes slot `slot`: the address, then len, id and flags in one store — released when
    /// `publishing` (the flags that make the slot available or used go last, PKD-DRV-07,
    /// PKD-SUP-01), relaxed otherwise.
    @inlinable @inline(__always)
    package func store(_ descriptor: PackedDescriptor, at slot: Int, publishing: Bool) {
        precondition(UInt(bitPattern: slot) < UInt(bitPattern: count), "slot out of ring")
        let p = base + (slot &<< 4)
        atomic64(p).pointee.store(descriptor.address.littleEndian, ordering: .relaxed)
        if publishing {
            atomic64(p + 8).pointee.store(descriptor.word1, ordering: .releasing)
        } else {
            atomic64(p + 8).pointee.store(descriptor.word1, ordering: .relaxed)
        }
    }

    /// Writes a used descriptor into slot `slot`: len, id and flags in one release store, the
    /// address left alone (unused in a used descriptor, PKD-DEF-05). Nothing of the slot is
    /// written after it (PKD-DEV-04).
    @inlinable @inline(__always)
    func storeUsed(_ slot: Int, id: UInt16, length: UInt32, flags: PackedDescriptorFlags) {
        storeUsedWord(slot, Self.usedWord(id: id, length: length, flags: flags), publishing: true)
    }

    /// The second word of a used descriptor: len, id and flags.
    @inlinable @inline(__always)
    static func usedWord(id: UInt16, length: UInt32, flags: PackedDescriptorFlags) -> UInt64 {
        UInt64(length) | UInt64(id) &<< 32 | UInt64(flags.rawValue) &<< 48
    }

    /// Writes a used descriptor's second word (``usedWord(id:length:flags:)``) into slot `slot`:
    /// with release ordering when `publishing` (it makes this slot, and every used slot written
    /// before it, visible as used), relaxed otherwise (a later slot of a batch whose first
    /// slot is written last, GHT-PKD-11).
    @inlinable @inline(__always)
    func storeUsedWord(_ slot: Int, _ word: UInt64, publishing: Bool) {
        let cell = atomic64(base + ((slot &<< 4) &+ 8))
        if publishing {
            cell.pointee.store(word.littleEndian, ordering: .releasing)
        } else {
            cell.pointee.store(word.littleEndian, ordering: .relaxed)
        }
    }
}

/// An event-suppression area: le16 off_wrap, le16 flags (VIRTIO 1.2 §2.8.10, PKD-EVT-01).
@frozen @usableFromInline
package struct UnsafePackedEventArea: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer

    /// A view over `range`, which must hold 4 bytes, 4-aligned.
    @inlinable
    package init(_ range: HostRange) {
        precondition(range.count >= 4 && range.isAligned(to: 4))
        base = range.base
    }

    /// The area as one relaxed 32-bit read (both fields from one fetch).
    @inlinable
    package var mode: PackedEventMode {
        get {
            let w = UInt32(littleEndian: atomic32(base).pointee.load(ordering: .relaxed))
            return PackedEventMode(offWrap: UInt16(truncatingIfNeeded: w), flags: UInt16(truncatingIfNeeded: w &>> 16))
        }
        nonmutating set {
            let (offWrap, flags) = newValue.words
            atomic32(base).pointee.store((UInt32(offWrap) | UInt32(flags) &<< 16).littleEndian, ordering: .relaxed)
        }
    }
}

extension UnsafeDescriptorTable {
    /// Reads entry `index` of a packed indirect table once (PKD-DEF-07).
    @inlinable
    package func loadPacked(_ index: Int) -> PackedDescriptor {
        let d = load(index)
        return PackedDescriptor(word0: d.address.littleEndian, word1: d.word1)
    }

    /// Writes entry `index` of a packed indirect table (driver side).
    @inlinable
    package func storePacked(_ descriptor: PackedDescriptor, at index: Int) {
        store(Descriptor(word0: descriptor.address.littleEndian, word1: descriptor.word1), at: index)
    }
}
