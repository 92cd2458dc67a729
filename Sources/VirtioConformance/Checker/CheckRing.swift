import Synchronization

/// The checker's split ring (VIRTIO 1.2 §2.7), written byte by byte in its own memory: nothing
/// here is validated, so a malformed chain reaches the back-end exactly as a case wrote it.
/// Layout (guest-physical = offset in the memfd): descriptors at 0, the available ring at
/// 0x1000, the used ring at 0x2000, indirect tables from 0x3000, an idle second ring at 0x7000,
/// buffers from 0x8000.
final class CheckRing {
    static let descriptorTable: UInt64 = 0
    static let availRing: UInt64 = 0x1000
    static let usedRing: UInt64 = 0x2000
    static let indirectBase: UInt64 = 0x3000
    static let bufferBase: UInt64 = 0x8000
    /// The page of a second, empty ring (queue 0 of a net back-end while queue 1 is checked).
    static let idleRing: UInt64 = 0x7000

    let base: UnsafeMutableRawPointer
    let size: Int
    /// The next available index the checker publishes, and the used index it has read up to.
    var availIndex: UInt16 = 0
    var usedSeen: UInt16 = 0
    /// Writable capacity of each head made available and not yet used.
    var inFlight: [UInt16: UInt32] = [:]

    init(base: UnsafeMutableRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    /// Guest address of buffer page `i`.
    static func page(_ i: Int) -> UInt64 { bufferBase + UInt64(i) * 4096 }

    func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) {
        base.storeBytes(of: value.littleEndian, toByteOffset: Int(address), as: T.self)
    }

    func load<T: FixedWidthInteger>(_ type: T.Type, at address: UInt64) -> T {
        T(littleEndian: base.loadUnaligned(fromByteOffset: Int(address), as: T.self))
    }

    func bytes(at address: UInt64, count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: base + Int(address), count: count))
    }

    func write(_ bytes: [UInt8], at address: UInt64) {
        UnsafeMutableRawBufferPointer(start: base + Int(address), count: bytes.count).copyBytes(from: bytes)
    }

    func fill(_ value: UInt8, at address: UInt64, count: Int) {
        (base + Int(address)).initializeMemory(as: UInt8.self, repeating: value, count: count)
    }

    /// A descriptor (le64 addr, le32 len, le16 flags, le16 next) in the table at `table`.
    func writeDescriptor(_ index: Int, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0,
                         table: UInt64 = CheckRing.descriptorTable) {
        let at = table + UInt64(index) * 16
        store(address, at: at)
        store(length, at: at + 8)
        store(flags, at: at + 12)
        store(next, at: at + 14)
    }

    /// One element of a chain: `writable` is VIRTQ_DESC_F_WRITE.
    struct Segment {
        var address: UInt64
        var length: UInt32
        var writable: Bool
    }

    /// Writes `segments` linked from descriptor `head` on (head, head+1, ...) and records the
    /// head's writable capacity; does not publish it.
    func writeChain(_ segments: [Segment], head: Int, table: UInt64 = CheckRing.descriptorTable) {
        for (i, s) in segments.enumerated() {
            let last = i == segments.count - 1
            let flags: UInt16 = (last ? 0 : 1) | (s.writable ? 2 : 0)
            writeDescriptor(head + i, address: s.address, length: s.length, flags: flags, next: last ? 0 : UInt16(head + i + 1), table: table)
        }
        if table == Self.descriptorTable { inFlight[UInt16(head)] = Self.capacity(segments) }
    }

    static func capacity(_ segments: [Segment]) -> UInt32 {
        segments.filter(\.writable).reduce(UInt32(0)) { $0 &+ $1.length }
    }

    /// Places `heads` in the available ring and publishes the new index (a release store).
    func publish(_ heads: [UInt16]) {
        for head in heads {
            store(head, at: Self.availRing + 4 + UInt64(Int(availIndex) % size) * 2)
            availIndex &+= 1
        }
        atomicMemoryFence(ordering: .releasing)
        store(availIndex, at: Self.availRing + 2)
    }

    /// Publishes any available index (a jump, without entries).
    func publishIndex(_ index: UInt16) {
        atomicMemoryFence(ordering: .releasing)
        store(index, at: Self.availRing + 2)
    }

    var availFlags: UInt16 {
        get { load(UInt16.self, at: Self.availRing) }
        set { store(newValue, at: Self.availRing) }
    }

    /// used_event: the le16 after the available ring's entries (EVENT_IDX).
    var usedEvent: UInt16 {
        get { load(UInt16.self, at: Self.availRing + 4 + UInt64(size) * 2) }
        set { store(newValue, at: Self.availRing + 4 + UInt64(size) * 2) }
    }

    var usedIndex: UInt16 {
        let v = load(UInt16.self, at: Self.usedRing + 2)
        atomicMemoryFence(ordering: .acquiring)
        return v
    }

    func usedElement(_ position: UInt16) -> (id: UInt32, length: UInt32) {
        let at = Self.usedRing + 4 + UInt64(Int(position) % size) * 8
        return (load(UInt32.self, at: at), load(UInt32.self, at: at + 4))
    }

    /// Starts both indices at `index` (the used index in memory too, as a front-end restoring a
    /// ring does before SET_VRING_BASE).
    func start(at index: UInt16) {
        availIndex = index
        usedSeen = index
        store(index, at: Self.availRing + 2)
        store(index, at: Self.usedRing + 2)
    }
}
