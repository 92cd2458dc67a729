/// The driver side of a virtqueue, whichever its format: ``SplitDriverQueue`` (VIRTIO 1.2
/// §2.7) or ``PackedDriverQueue`` (§2.8).
public protocol DriverQueue {
    /// The features negotiated for the device.
    var features: VirtioFeatures { get }
    /// Descriptors (table entries or ring slots) free for new chains.
    var freeDescriptorCount: Int { get }
    /// Chains made available and not yet used.
    var outstandingCount: Int { get }
    /// Whether the device's behaviour broke the queue.
    var isBroken: Bool { get }
    /// The violation of the device that broke the queue, if any.
    var failure: DriverQueueError? { get }

    /// Exposes a chain of device-readable then device-writable buffers; returns its head
    /// descriptor (split) or buffer id (packed).
    @discardableResult
    mutating func add(readable: Span<BufferSegment>, writable: Span<BufferSegment>, token: UInt64,
                      layout: ChainLayout) throws(DriverQueueError) -> UInt16
    /// Makes what was added visible to the device.
    mutating func publish()
    /// Whether the device wants an available-buffer notification for what was published.
    mutating func kickNeeded() -> Bool
    /// Takes the next used chain back, checked; `nil` when nothing new was used.
    mutating func reapUsed() throws(DriverQueueError) -> UsedBuffer?
    /// Takes back every used chain now, in order; returns how many.
    @discardableResult
    mutating func reapAllUsed(_ body: (UsedBuffer) -> Void) throws(DriverQueueError) -> Int
    /// Takes back every outstanding chain after a reset (CLN-DRV-02) and returns their tokens.
    mutating func detachAllOutstanding() -> [UInt64]
    /// Asks the device not to send used-buffer notifications.
    mutating func disableUsedNotifications()
    /// Asks for used-buffer notifications; returns whether used chains are already waiting.
    mutating func enableUsedNotifications() -> Bool
}

extension DriverQueue {
    /// Exposes a chain given as arrays.
    @discardableResult
    public mutating func add(readable: [BufferSegment], writable: [BufferSegment], token: UInt64,
                             layout chainLayout: ChainLayout = .automatic) throws(DriverQueueError) -> UInt16 {
        try add(readable: readable.span, writable: writable.span, token: token, layout: chainLayout)
    }
}

extension SplitDriverQueue: DriverQueue {}

extension PackedDriverQueue: DriverQueue {
    /// Free ring slots (a list takes one per descriptor, an indirect list one).
    public var freeDescriptorCount: Int { freeSlots }
}
