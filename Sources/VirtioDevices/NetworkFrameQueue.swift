import VirtioCore

/// The frames waiting at one port for its guest's receive buffers (GHT-NET-04, GHT-NET-08): a
/// ring of `capacity` slots of ``NetworkSwitch/maxFrameSize`` bytes, allocated once with the
/// port, so that a frame crossing the switch costs no allocation: the sender's transmit worker
/// copies it from the sender's buffers into a slot, the receiver's worker from the slot into
/// the receiver's buffers, a burst at a time under the port's lock.
///
/// A value type over memory the owning ``NetworkDevice`` allocates and frees; used only inside
/// the device's lock (every method is `mutating`, and the lock is the one way in).
struct NetworkFrameQueue: @unchecked Sendable {   // its memory is reached only inside the owning lock
    /// Bytes per slot: the largest frame, rounded up to cache lines.
    static let slotSize = (NetworkSwitch.maxFrameSize + 63) & ~63
    let capacity: Int
    private let slots: UnsafeMutableRawPointer
    /// Per slot: the frame's length, and the port it came from (negative when it was flooded).
    private let lengths: UnsafeMutablePointer<UInt16>
    private let sources: UnsafeMutablePointer<Int32>
    private var head = 0
    private(set) var count = 0
    /// Flooded frames waiting, by source port (GHT-ISO-03): a handful of entries, one per
    /// flooding port, kept allocated.
    private var flooded: [Int32: Int] = [:]

    /// Why a frame was not queued.
    enum Refusal {
        case full
        case floodBudget
    }

    init(capacity: Int) {
        self.capacity = capacity
        slots = UnsafeMutableRawPointer.allocate(byteCount: capacity * Self.slotSize, alignment: 64)
        lengths = .allocate(capacity: capacity)
        sources = .allocate(capacity: capacity)
    }

    /// Frees the memory; the queue is not used afterwards (the device's deinit).
    func deallocate() {
        slots.deallocate()
        lengths.deallocate()
        sources.deallocate()
    }

    /// Queues one frame from port `source`: `fill` copies it into the slot it is given (at most
    /// ``NetworkSwitch/maxFrameSize`` bytes) and returns its length. Refused when the queue is
    /// full, or the frame is flooded and `source` has `floodBudget` flooded frames here already.
    mutating func append(from source: Int, flooded isFlooded: Bool, floodBudget: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Int) -> Refusal? {
        guard count < capacity else { return .full }
        let port = Int32(truncatingIfNeeded: source)
        if isFlooded {
            guard flooded[port, default: 0] < floodBudget else { return .floodBudget }
            flooded[port, default: 0] += 1
        }
        var tail = head + count
        if tail >= capacity { tail -= capacity }
        let length = fill(UnsafeMutableRawBufferPointer(start: slots + tail * Self.slotSize, count: NetworkSwitch.maxFrameSize))
        lengths[tail] = UInt16(truncatingIfNeeded: length)
        sources[tail] = isFlooded ? -port : port
        count += 1
        return nil
    }

    /// Takes the oldest frame, handing it to `body` (valid only during the call); false when
    /// there is none.
    mutating func removeFirst(_ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        guard count > 0 else { return false }
        body(UnsafeRawBufferPointer(start: slots + head * Self.slotSize, count: Int(lengths[head])))
        if sources[head] < 0 { release(flooded: -sources[head]) }
        head += 1
        if head == capacity { head = 0 }
        count -= 1
        return true
    }

    /// Drops every frame (device reset).
    mutating func removeAll() {
        head = 0
        count = 0
        flooded.removeAll(keepingCapacity: true)
    }

    private mutating func release(flooded port: Int32) {
        let left = flooded[port, default: 1] - 1
        if left == 0 { flooded[port] = nil } else { flooded[port] = left }
    }
}
