import Synchronization
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport

/// The device model a shared device's guests are scheduled with (Spec/scheduler.md).
public enum SharedDeviceModel: Sendable, Equatable {
    /// virtio-blk: each guest owns a window of sectors (``BlockDeviceModel``).
    case block
    /// virtio-net: each guest sends only from its port's address (``NetworkDeviceModel``).
    case network
    /// Any other device: turns only, no per-request rules (``OpaqueDeviceModel``).
    case opaque
}

/// How the guests of a ``SharedDevice`` share its virtual functions.
public struct SharedDeviceConfiguration: Sendable {
    /// The device's virtual functions (1...64).
    public var functionCount = 1
    /// Policy, mapping, slice and cut-off.
    public var scheduler = SchedulerConfiguration()
    public var model = SharedDeviceModel.opaque
    /// Guests by connection order: the k-th connection (1-based) weighs `weights[k-1]`;
    /// guests past the list weigh 1. Not with ``guests``.
    public var weights: [Int] = []
    /// virtio-blk, guests by connection order: guest k owns sectors [(k-1)·w, k·w). For named
    /// guests, the window of one that gives none (by listing order).
    public var windowSectors: UInt64?
    /// Named guests, each on a socket of its own; empty: guests by connection order.
    public var guests: [NamedGuest] = []

    public init() {}

    /// The weight of the k-th guest by connection order.
    public func weight(ofGuest k: Int) -> Int { k >= 1 && k <= weights.count ? weights[k - 1] : 1 }
}

/// One device shared by guests that connect over vhost-user, in turns on its virtual
/// functions (`virtio-grant serve --vfs N`): each connection is served a fresh device wrapped
/// as a guest of one ``DeviceScheduler``, with its window and weight by name
/// (``NamedGuest``) or by connection order.
///
/// ```swift
/// var configuration = SharedDeviceConfiguration()
/// configuration.functionCount = 2
/// configuration.guests = [try NamedGuest(parsing: "a=/run/a.sock,weight=2"), try NamedGuest(parsing: "b=/run/b.sock")]
/// let shared = try SharedDevice(configuration) { EchoDevice(queueCount: 1, maxQueueSize: 256) }
/// let backEnds = try shared.listeners.map { try shared.backEnd(for: $0) }
/// backEnds.forEach { $0.start() }
/// ```
public final class SharedDevice: Sendable {
    /// The configuration, its named guests validated (windows filled in).
    public let configuration: SharedDeviceConfiguration
    private let serve: @Sendable (SharedDeviceListener) -> any VirtioDevice
    private let statistics: @Sendable (DomainID) -> GuestStatistics?
    private let stopScheduler: @Sendable () -> Void

    /// Creates the scheduler; `makeDevice` makes the device each connection is served.
    public init(_ configuration: SharedDeviceConfiguration, makeDevice: @escaping @Sendable () -> any VirtioDevice) throws(SharedDeviceError) {
        var configuration = configuration
        if !configuration.guests.isEmpty && !configuration.weights.isEmpty { throw .weightsWithNamedGuests }
        if configuration.model == .block && configuration.guests.isEmpty && configuration.windowSectors == nil { throw .noWindowSectors }
        configuration.guests = try NamedGuest.validated(configuration.guests, model: configuration.model, windowSectors: configuration.windowSectors)
        self.configuration = configuration
        let parts: Parts
        do {
            switch configuration.model {
            case .block:
                parts = try Self.wrap(BlockDeviceModel.self, configuration, makeDevice) { identity, _ in BlockDeviceModel.Rules(sectors: identity.window) }
            case .network:
                parts = try Self.wrap(NetworkDeviceModel.self, configuration, makeDevice) { _, device in
                    NetworkDeviceModel.Rules(address: (device as? NetworkDevice)?.mac ?? .broadcast)
                }
            case .opaque:
                parts = try Self.wrap(OpaqueDeviceModel.self, configuration, makeDevice) { _, _ in OpaqueDeviceModel.Rules() }
            }
        } catch {
            throw .scheduler(error)
        }
        (serve, statistics, stopScheduler) = parts
    }

    /// Where guests connect: one listener per named guest (`socket` is not used), or, without
    /// named guests, one on `socket` for guests by connection order (none if `socket` is nil).
    public func listeners(socket: String? = nil) -> [SharedDeviceListener] {
        guard configuration.guests.isEmpty else { return configuration.guests.map { SharedDeviceListener(socket: $0.socket, guest: $0) } }
        return socket.map { [SharedDeviceListener(socket: $0, guest: nil)] } ?? []
    }

    /// The device a new connection on `listener` is served (a `BackEnd`'s `makeDevice`).
    public func makeDevice(for listener: SharedDeviceListener) -> any VirtioDevice { serve(listener) }

    /// The guest a session of `listener` is and what the scheduler gave it, once the session
    /// has been served a device (`id` is the session's ``SessionReport/id``).
    public func guest(ofSession id: Int, on listener: SharedDeviceListener) -> (guest: DomainID, statistics: GuestStatistics)? {
        guard let guest = listener.directory.guest(ofSession: id), let stats = statistics(guest) else { return nil }
        return (guest, stats)
    }

    /// A back-end listening on `listener`'s socket, every connection a guest of this device.
    /// Start it with `start()`; `stop()` it before ``stop()``.
    public func backEnd(for listener: SharedDeviceListener, configuration: BackEndConfiguration = BackEndConfiguration()) throws -> BackEnd {
        try BackEnd(socketPath: listener.socket, configuration: configuration) { [self] in self.makeDevice(for: listener) }
    }

    /// Stops the scheduler's watchdog; guests still connected are served no more.
    public func stop() { stopScheduler() }

    private typealias Parts = (serve: @Sendable (SharedDeviceListener) -> any VirtioDevice,
                               statistics: @Sendable (DomainID) -> GuestStatistics?, stop: @Sendable () -> Void)

    /// A connection's rules and weight: by the guest's name, or by its number k.
    private static func identity(_ configuration: SharedDeviceConfiguration, _ guest: NamedGuest?, _ k: Int) -> (window: Range<UInt64>, weight: Int) {
        if let guest { return (guest.window ?? 0..<0, guest.weight) }
        let sectors = configuration.windowSectors ?? 0
        let first = UInt64(k - 1) &* sectors
        return (first..<(first &+ sectors), configuration.weight(ofGuest: k))
    }

    private static func wrap<Model: DeviceModel>(_: Model.Type, _ configuration: SharedDeviceConfiguration,
                                                 _ makeDevice: @escaping @Sendable () -> any VirtioDevice,
                                                 rules: @escaping @Sendable ((window: Range<UInt64>, weight: Int), any VirtioDevice) -> Model.Rules)
        throws(SchedulerError) -> Parts {
        let scheduler = try DeviceScheduler<Model>(functionCount: configuration.functionCount, configuration: configuration.scheduler)
        let serve: @Sendable (SharedDeviceListener) -> any VirtioDevice = { listener in
            let directory = listener.directory
            let k = directory.nextSession()
            let device = makeDevice()
            let identity = identity(configuration, listener.guest, k)
            do {
                let scheduled = try ScheduledDevice(scheduler: scheduler, rules: rules(identity, device), weight: identity.weight, device: device)
                directory.record(session: k, guest: scheduled.guest)
                // A named guest has one session: a newer connection on its socket is the guest
                // now, and an older one still open is served no more.
                guard listener.guest != nil else { return scheduled }
                return GuardedGuestDevice(scheduled) { directory.isLatest(session: k) }
            } catch {
                // No function for this guest (a 1:1 mapping is full, or the guest limit is
                // reached): every batch breaks its queue.
                return GuardedGuestDevice(device) { false }
            }
        }
        return (serve, { scheduler.statistics(of: $0) }, { scheduler.stop() })
    }
}

/// A socket guests of a ``SharedDevice`` connect on, and the guest it names, if any. Its
/// sessions are numbered in connection order (the back-end's session ids on that socket).
public struct SharedDeviceListener: Sendable {
    public let socket: String
    /// The named guest whose socket this is; `nil`: guests by connection order.
    public let guest: NamedGuest?
    let directory = GuestDirectory()

    public init(socket: String, guest: NamedGuest?) {
        self.socket = socket
        self.guest = guest
    }
}

/// Which guest each session on one socket is.
final class GuestDirectory: Sendable {
    private let lock = Locked<(next: Int, guests: [Int: DomainID])>((0, [:]))

    func nextSession() -> Int { lock.withLock { $0.next += 1; return $0.next } }
    /// Whether `session` is the last one that came in on this socket.
    func isLatest(session: Int) -> Bool { lock.withLock { $0.next == session } }
    func record(session: Int, guest: DomainID) { lock.withLock { $0.guests[session] = guest } }
    func guest(ofSession session: Int) -> DomainID? { lock.withLock { $0.guests[session] } }
}

/// A connection served only while `isServed` says so: one the scheduler had no function for
/// (never), or a named guest's session superseded by a newer connection on its socket.
/// Negotiation works; a batch while not served breaks the queue (DEVICE_NEEDS_RESET), so the
/// front-end learns it is not served.
final class GuardedGuestDevice: VirtioDevice {
    let device: any VirtioDevice
    let isServed: @Sendable () -> Bool

    init(_ device: any VirtioDevice, isServed: @escaping @Sendable () -> Bool) {
        self.device = device
        self.isServed = isServed
    }

    var deviceID: UInt32 { device.deviceID }
    var deviceFeatures: VirtioFeatures { device.deviceFeatures }
    var featureRequirements: [(VirtioFeatures, VirtioFeatures)] { device.featureRequirements }
    var queueCount: Int { device.queueCount }
    var maxQueueSize: Int { device.maxQueueSize }
    func readConfig() -> [UInt8] { device.readConfig() }
    func writeConfig(offset: Int, bytes: [UInt8]) -> Bool { device.writeConfig(offset: offset, bytes: bytes) }
    func acceptFeatures(_ features: VirtioFeatures) -> Bool { device.acceptFeatures(features) }
    func readyBuffers(queue: Int) -> Int? { device.readyBuffers(queue: queue) }
    func queueStarted(_ queue: Int, doorbell: QueueDoorbell) { device.queueStarted(queue, doorbell: doorbell) }
    func queueStopped(_ queue: Int) { device.queueStopped(queue) }
    func queueIdle(_ queue: Int) { device.queueIdle(queue) }
    func completionEvent(queue: Int) -> Doorbell? { device.completionEvent(queue: queue) }
    func serviceQueue(_ queue: Int) { device.serviceQueue(queue) }
    func reset() { device.reset() }

    func process(queue: Int, batch: inout RequestBatch) {
        guard isServed() else { return batch.abandonQueue() }
        device.process(queue: queue, batch: &batch)
    }
}
