import Synchronization
import VirtioCore
import VirtioDevices
import VirtioScheduler
import VirtioTransport

/// `serve --vfs N ...`: the connections share N virtual functions of one device in turns
/// (Spec/scheduler.md). With `--guest NAME=SOCKET,...` each guest is named by the operator and
/// connects on a socket of its own: windows and weights follow the name (``GuestSpec``).
/// Without, guests on `--socket` are numbered in connection order, as sessions are.
struct SchedulerOptions {
    static let names: Set<String> = ["vfs", "mapping", "policy", "weights", "slice-ms", "cutoff-ms", "quantum", "window-sectors", "guest"]

    let functions: Int
    let configuration: SchedulerConfiguration
    /// Weights by guest number (1-based); guests past the list weigh 1.
    let weights: [Int]
    /// virtio-blk: guest k owns sectors [(k-1)·w, k·w).
    let windowSectors: UInt64?
    /// The named guests (`--guest`), each on its own socket; empty: guests by connection order.
    let guests: [GuestSpec]

    init?(_ options: Options, device: String) throws(UsageError) {
        guard options.string("vfs") != nil else {
            if let extra = Self.names.first(where: { options.string($0) != nil }) {
                throw UsageError(description: "--\(extra) needs --vfs")
            }
            return nil
        }
        functions = try options.int("vfs", default: 1, in: 1...64)
        var configuration = SchedulerConfiguration()
        switch try options.choice("mapping", default: "n:m", from: ["1:1", "1:n", "n:m"]) {
        case "1:1": configuration.mapping = .oneToOne
        case "1:n": configuration.mapping = .shared(0)
        default: configuration.mapping = .pool
        }
        let quantum = try options.int("quantum", default: 32, in: 1...(1 << 30))
        switch try options.choice("policy", default: "drr", from: ["rr", "drr", "drr-bytes"]) {
        case "rr": configuration.policy = .roundRobin
        case "drr-bytes": configuration.policy = .deficitRoundRobin(unit: .bytes, quantum: quantum)
        default: configuration.policy = .deficitRoundRobin(unit: .requests, quantum: quantum)
        }
        configuration.sliceNanoseconds = UInt64(try options.int("slice-ms", default: 2, in: 1...10_000)) * 1_000_000
        configuration.cutOffNanoseconds = UInt64(try options.int("cutoff-ms", default: 100, in: 1...600_000)) * 1_000_000
        self.configuration = configuration
        weights = try options.ints("weights", default: [1], in: 1...1000)
        let named = options.strings("guest")
        if !named.isEmpty && options.string("weights") != nil {
            throw UsageError(description: "with --guest, give each guest its weight as --guest NAME=SOCKET,weight=W")
        }
        if device == "blk" {
            guard options.string("window-sectors") != nil || !named.isEmpty else {
                throw UsageError(description: "--vfs with --device blk needs --window-sectors N")
            }
            windowSectors = options.string("window-sectors") == nil ? nil : UInt64(try options.int("window-sectors", default: 1, in: 1...(1 << 40)))
        } else {
            guard options.string("window-sectors") == nil else { throw UsageError(description: "--window-sectors is for --device blk") }
            windowSectors = nil
        }
        guests = try GuestSpec.parse(named, device: device, windowSectors: windowSectors)
    }

    func weight(of guest: Int) -> Int { guest >= 1 && guest <= weights.count ? weights[guest - 1] : 1 }

    /// A connection's rules and weight: by the guest's name (`--guest`), or by its number k.
    private func identity(_ spec: GuestSpec?, _ k: Int) -> (window: Range<UInt64>, weight: Int) {
        if let spec { return (spec.window ?? 0..<0, spec.weight) }
        let first = UInt64(k - 1) &* (windowSectors ?? 0)
        return (first..<(first &+ (windowSectors ?? 0)), weight(of: k))
    }

    /// What serves one connection: a guest of one scheduler, with the model of the device
    /// type. It is given the directory of the socket the connection came in on (session number
    /// → guest) and the guest that socket names, if any.
    typealias Factory = @Sendable (GuestDirectory, GuestSpec?) -> any VirtioDevice

    /// Wraps `makeDevice` so that each connection is a guest of one scheduler.
    func factory(device: String, _ makeDevice: @escaping @Sendable () -> any VirtioDevice) throws -> Factory {
        switch device {
        case "blk":
            return try wrap(BlockDeviceModel.self, makeDevice) { identity, _ in BlockDeviceModel.Rules(sectors: identity.window) }
        case "net":
            return try wrap(NetworkDeviceModel.self, makeDevice) { _, device in
                NetworkDeviceModel.Rules(address: (device as? NetworkDevice)?.mac ?? .broadcast)
            }
        default:
            return try wrap(OpaqueDeviceModel.self, makeDevice) { _, _ in OpaqueDeviceModel.Rules() }
        }
    }

    private func wrap<Model: DeviceModel>(_: Model.Type, _ makeDevice: @escaping @Sendable () -> any VirtioDevice,
                                          rules: @escaping @Sendable ((window: Range<UInt64>, weight: Int), any VirtioDevice) -> Model.Rules) throws -> Factory {
        let scheduler = try DeviceScheduler<Model>(functionCount: functions, configuration: configuration)
        let options = self
        return { directory, spec in
            directory.statistics.withLock { $0 = { guest in scheduler.statistics(of: guest) } }
            let k = directory.nextSession()
            let device = makeDevice()
            let identity = options.identity(spec, k)
            do {
                let scheduled = try ScheduledDevice(scheduler: scheduler, rules: rules(identity, device), weight: identity.weight, device: device)
                directory.record(session: k, guest: scheduled.guest)
                // A named guest has one session: a newer connection on its socket is the guest
                // now, and an older one still open is served no more.
                guard spec != nil else { return scheduled }
                return GuardedGuestDevice(scheduled) { directory.isLatest(session: k) }
            } catch {
                // No function for this guest (a 1:1 mapping is full, or the guest limit is
                // reached): every batch breaks its queue.
                return GuardedGuestDevice(device) { false }
            }
        }
    }
}

/// Which guest each session is, and where its statistics come from (serve's session reports).
final class GuestDirectory: Sendable {
    private let lock = Locked<(next: Int, guests: [Int: DomainID])>((0, [:]))
    /// Where a guest's statistics come from (set by the scheduler's factory).
    let statistics = Locked<@Sendable (DomainID) -> GuestStatistics?>({ _ in nil })

    func nextSession() -> Int { lock.withLock { $0.next += 1; return $0.next } }
    /// Whether `session` is the last one that came in on this socket.
    func isLatest(session: Int) -> Bool { lock.withLock { $0.next == session } }
    func record(session: Int, guest: DomainID) { lock.withLock { $0.guests[session] = guest } }
    func guest(ofSession session: Int) -> DomainID? { lock.withLock { $0.guests[session] } }
    func statistics(of guest: DomainID) -> GuestStatistics? { statistics.withLock { $0 }(guest) }
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
    func reset() { device.reset() }

    func process(queue: Int, batch: inout RequestBatch) {
        guard isServed() else { return batch.abandonQueue() }
        device.process(queue: queue, batch: &batch)
    }
}
