import VirtioCore
import VirtioSystem

/// The device side an embedder implements: a back-end serves one instance to each front-end
/// that connects (DESIGN §4).
///
/// The back-end resolves every segment of a chain through the mapper before the device sees
/// it (a chain naming memory the device may not reach breaks the queue and never reaches the
/// device), and calls ``process(queue:batch:)`` once per batch of chains, not per chain or per
/// descriptor (DESIGN §5). Queues run on their own threads, so a device must be thread-safe
/// across queues; one queue's batches arrive in order on one thread. A device completes each
/// request inside ``process(queue:batch:)``, or keeps it and completes it later from any thread
/// (``RequestBatch/completeLater(_:)``), in any order unless VIRTIO_F_IN_ORDER was negotiated.
public protocol VirtioDevice: AnyObject, Sendable {
    /// The virtio device ID (VIRTIO 1.2 §5; 1 network, 2 block, ...).
    var deviceID: UInt32 { get }
    /// The device-type feature bits offered (bits 0–23 and 50–63); the transport adds its own.
    var deviceFeatures: VirtioFeatures { get }
    /// Prerequisites among the device-type bits (a feature, and what it requires).
    var featureRequirements: [(VirtioFeatures, VirtioFeatures)] { get }
    /// The number of queues.
    var queueCount: Int { get }
    /// The largest size of each queue (a power of 2 up to 32768).
    var maxQueueSize: Int { get }

    /// The device configuration space as one image, as the driver reads it (little-endian
    /// fields, VIRTIO 1.2 §2.5). The default: empty, a device type without a configuration
    /// space (virtio-rng, §5.4.4).
    func readConfig() -> [UInt8]
    /// The size of the configuration space in bytes; 0 for a device without one, whose
    /// back-end then does not offer vhost-user's CONFIG protocol feature (GHT-EMB-01). The
    /// default: the size of ``readConfig()``'s image.
    var configurationSize: Int { get }
    /// `count` bytes of the configuration space at `offset`: what vhost-user's GET_CONFIG asks
    /// (vhost-user.rst "Virtio device config space"; VIRTIO 1.2 §4.2.2, §2.5). The window comes
    /// from the front-end: it is at most 256 bytes inside the first 256 (GHT-VU-13), nothing
    /// more. A refusal is answered as GET_CONFIG's error (a reply of size 0) and logged; the
    /// session goes on (GHT-EMB-03). The default serves ``readConfig()``'s image through
    /// ``ConfigurationSpace/read(offset:count:)``; a device whose space is large or computed
    /// per field answers windows itself, and must return exactly `count` bytes.
    func readConfig(offset: Int, count: Int) throws(ConfigurationSpaceError) -> [UInt8]
    /// A driver write to the configuration space; `false` refuses it.
    func writeConfig(offset: Int, bytes: [UInt8]) -> Bool
    /// The driver accepted `features` (FEATURES_OK); `false` refuses the set (FEAT-DEV-02).
    func acceptFeatures(_ features: VirtioFeatures) -> Bool
    /// Processes the requests of one batch from `queue`: completes each with its used length
    /// (``RequestBatch/complete(_:usedLength:)``) or keeps it to complete later, from any thread
    /// (``RequestBatch/completeLater(_:)``, GHT-ASY-01).
    func process(queue: Int, batch: inout RequestBatch)
    /// Returns to the initial state (device reset, or the front-end went away).
    func reset()

    /// How many available buffers of `queue` the device can use now; the back-end pops no
    /// more than that. `nil`, the default: every buffer the driver offers. A network device's
    /// receive queue answers the frames waiting for it, so that buffers stay with the driver
    /// until there is something to put in them.
    func readyBuffers(queue: Int) -> Int?
    /// `queue` started serving (DRIVER_OK, or after a restart); `doorbell` makes its worker look
    /// at the queue again, for a device with buffers to fill on its own schedule.
    func queueStarted(_ queue: Int, doorbell: QueueDoorbell)
    /// `queue` stopped; its doorbell rings nobody.
    func queueStopped(_ queue: Int)
    /// `queue`'s worker found nothing more it can process and goes to sleep: no chain of the
    /// queue is inside the device until the next ``process(queue:batch:)``. A device shared
    /// in turns (the scheduler) ends the guest's turn here.
    func queueIdle(_ queue: Int)

    /// An eventfd the worker of `queue` watches beside the kick: an asynchronous device's
    /// completion source (an io_uring's registered eventfd). When it is signalled, and on every
    /// round of a polling worker, the worker calls ``serviceQueue(_:)`` on its own thread
    /// (GHT-ASY-07). Asked once per queue start, after ``queueStarted(_:doorbell:)``. The
    /// default: none.
    func completionEvent(queue: Int) -> Doorbell?
    /// Called on `queue`'s worker thread when its ``completionEvent(queue:)`` fired, or on each
    /// round of a polling worker: the device reaps what finished and completes the requests it
    /// kept. A completion from here needs no cross-thread wake-up. The default: nothing.
    func serviceQueue(_ queue: Int)
    /// DEVICE_STATE: the device's internal state, for a migration's destination (called on the
    /// session thread while every queue is stopped). Default: no state (empty).
    func saveState() throws -> [UInt8]
    /// DEVICE_STATE: restores what ``saveState()`` of another instance produced. The bytes come
    /// from the front-end: validate everything (GHT-DST-04). Default: only an empty state.
    func loadState(_ state: [UInt8]) throws
}

/// Wakes one queue's worker so that it asks the device again how many buffers it can use
/// (``VirtioDevice/readyBuffers(queue:)``): a frame arrived for a receive queue.
public final class QueueDoorbell: Sendable {
    private let notifier: Doorbell

    init(_ notifier: Doorbell) { self.notifier = notifier }

    /// Rings the doorbell; any thread, any number of times (rings coalesce).
    public func ring() { try? notifier.signal() }
}

extension VirtioDevice {
    public func readyBuffers(queue: Int) -> Int? { nil }
    public func queueStarted(_ queue: Int, doorbell: QueueDoorbell) {}
    public func queueStopped(_ queue: Int) {}
    public func queueIdle(_ queue: Int) {}
    public func completionEvent(queue: Int) -> Doorbell? { nil }
    public func serviceQueue(_ queue: Int) {}
    public var featureRequirements: [(VirtioFeatures, VirtioFeatures)] { [] }
    public func readConfig() -> [UInt8] { [] }
    public var configurationSize: Int { readConfig().count }
    public func readConfig(offset: Int, count: Int) throws(ConfigurationSpaceError) -> [UInt8] {
        try ConfigurationSpace(readConfig()).read(offset: offset, count: count)
    }
    public func writeConfig(offset: Int, bytes: [UInt8]) -> Bool { false }
    public func acceptFeatures(_ features: VirtioFeatures) -> Bool { true }
}
