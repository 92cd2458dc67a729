/// The device side of a virtqueue, whichever its format: ``SplitDeviceQueue`` (VIRTIO 1.2
/// §2.7) or ``PackedDeviceQueue`` (§2.8).
///
/// Both yield the same ``DescriptorChain`` values and take the same completions, so code
/// written against this protocol — a queue processor, a device — cannot tell which format its
/// chains came from. Generic code over it is specialized per format: no dynamic dispatch on
/// the hot path.
public protocol DeviceQueue<Memory>: Sendable, ~Copyable {
    associatedtype Memory: MemoryTranslator

    /// The translator for buffer addresses.
    var memory: Memory { get }
    /// The features negotiated for the device.
    var features: VirtioFeatures { get }
    /// Whether a violation has broken the queue.
    var isBroken: Bool { get }
    /// The error that broke the queue, if any.
    var failure: VirtqueueError? { get }
    /// The number of popped chains not yet completed.
    var inFlightCount: Int { get }
    /// Where the queue stands, as a value apart from the ring memory (GHT-QST-01).
    var state: QueueState { get }
    /// Where the queue will stand once `chains`, popped from it, are completed and published.
    func state(completing chains: [DescriptorChain]) -> QueueState
    /// Resumes from `state`: nothing in flight, not broken, the state's positions
    /// (GHT-QST-02, GHT-QST-03); a state of another ring is refused and nothing changes.
    mutating func restore(_ state: QueueState) throws(QueueStateError)

    /// Pops the next available chain, validated; `nil` when nothing new is available.
    mutating func popAvailable() throws(VirtqueueError) -> DescriptorChain?
    /// Un-pops the chain popped last (a buffer not mapped yet, GHT-IOVA-06).
    mutating func giveBack(_ chain: DescriptorChain)
    /// Why the last ``popAvailable()`` returned `nil` with chains still available: an indirect
    /// table at an address not mapped yet (GHT-IOVA-06). Nothing was consumed; the pop is
    /// retried once the mapping arrives. Reading it clears it.
    mutating func takeMappingMiss() -> TranslationFault?
    /// Completes `chain` with `length` bytes written.
    mutating func addUsed(_ chain: DescriptorChain, length: UInt32)
    /// Makes the completions added so far visible to the driver.
    mutating func publishUsed()
    /// Whether the driver wants a used-buffer notification for what was published since the
    /// last call.
    mutating func needsNotification() -> Bool
    /// Asks the driver to kick for new chains; returns whether chains are already available.
    mutating func enableNotifications() -> Bool
    /// Asks the driver not to kick.
    mutating func disableNotifications()
    /// Breaks the queue with `error` (STAT-DEV-02) and returns the error that broke it.
    @discardableResult
    mutating func fail(_ error: VirtqueueError) -> VirtqueueError
    /// Returns the queue to its initial state (QRST-DEV-02).
    mutating func reset()
}

extension DeviceQueue where Self: ~Copyable {
    /// The queue's position in vhost-user's VHOST_USER_GET_VRING_BASE encoding
    /// (``QueueState/vhostUserBase``).
    @inlinable
    public var vringBase: UInt32 { state.vhostUserBase }

    /// A reader over the device-readable part of `chain`.
    @inlinable
    public func reader(for chain: DescriptorChain) -> ChainReader<Memory> { ChainReader(chain: chain, memory: memory) }

    /// A writer over the device-writable part of `chain`.
    @inlinable
    public func writer(for chain: DescriptorChain) -> ChainWriter<Memory> { ChainWriter(chain: chain, memory: memory) }
}

extension SplitDeviceQueue: DeviceQueue {
    /// Returns the queue to its initial state (``QueueState/initial``): both indices at 0
    /// (QRST-DEV-02).
    public mutating func reset() {
        let initial = state.initial
        reset(nextAvailIndex: initial.nextAvail, usedIndex: initial.nextUsed)
    }
}

extension PackedDeviceQueue: DeviceQueue {
    /// Returns the queue to its initial state (``QueueState/initial``): both positions at slot 0
    /// with wrap counter 1 (QRST-DEV-02).
    public mutating func reset() {
        let initial = state.initial
        reset(availPosition: initial.availPosition, usedPosition: initial.usedPosition)
    }
}
