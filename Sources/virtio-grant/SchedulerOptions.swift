import Synchronization
import VirtioCore
import VirtioDevices
import VirtioScheduler
import VirtioTransport

/// `serve --vfs N ...`: the connections share N virtual functions of one device in turns
/// (Spec/scheduler.md). Guests are numbered in connection order, as sessions are.
struct SchedulerOptions {
    static let names: Set<String> = ["vfs", "mapping", "policy", "weights", "slice-ms", "cutoff-ms", "quantum", "window-sectors"]

    let functions: Int
    let configuration: SchedulerConfiguration
    /// Weights by guest number (1-based); guests past the list weigh 1.
    let weights: [Int]
    /// virtio-blk: guest k owns sectors [(k-1)·w, k·w).
    let windowSectors: UInt64?

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
        if device == "blk" {
            guard options.string("window-sectors") != nil else { throw UsageError(description: "--vfs with --device blk needs --window-sectors N") }
            windowSectors = UInt64(try options.int("window-sectors", default: 1, in: 1...(1 << 40)))
        } else {
            guard options.string("window-sectors") == nil else { throw UsageError(description: "--window-sectors is for --device blk") }
            windowSectors = nil
        }
    }

    func weight(of guest: Int) -> Int { guest >= 1 && guest <= weights.count ? weights[guest - 1] : 1 }

    /// Wraps `makeDevice` so that each connection is a guest of one scheduler with the model
    /// of the device type; `guests` records session number → guest.
    func factory(device: String, _ makeDevice: @escaping @Sendable () -> any VirtioDevice,
                 guests: GuestDirectory) throws -> @Sendable () -> any VirtioDevice {
        switch device {
        case "blk":
            let window = windowSectors ?? 0
            return try wrap(BlockDeviceModel.self, makeDevice, guests) { k, _ in
                let first = UInt64(k - 1) &* window
                return BlockDeviceModel.Rules(sectors: first..<(first &+ window))
            }
        case "net":
            return try wrap(NetworkDeviceModel.self, makeDevice, guests) { _, device in
                NetworkDeviceModel.Rules(address: (device as? NetworkDevice)?.mac ?? .broadcast)
            }
        default:
            return try wrap(OpaqueDeviceModel.self, makeDevice, guests) { _, _ in OpaqueDeviceModel.Rules() }
        }
    }

    private func wrap<Model: DeviceModel>(_: Model.Type, _ makeDevice: @escaping @Sendable () -> any VirtioDevice, _ guests: GuestDirectory,
                                          rules: @escaping @Sendable (Int, any VirtioDevice) -> Model.Rules) throws -> @Sendable () -> any VirtioDevice {
        let scheduler = try DeviceScheduler<Model>(functionCount: functions, configuration: configuration)
        let options = self
        guests.statistics.withLock { $0 = { guest in scheduler.statistics(of: guest) } }
        return {
            let k = guests.nextSession()
            let device = makeDevice()
            do {
                let scheduled = try ScheduledDevice(scheduler: scheduler, rules: rules(k, device), weight: options.weight(of: k), device: device)
                guests.record(session: k, guest: scheduled.guest)
                return scheduled
            } catch {
                // No function for this guest (a 1:1 mapping is full): every batch breaks its queue.
                return RefusedGuestDevice(device)
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
    func record(session: Int, guest: DomainID) { lock.withLock { $0.guests[session] = guest } }
    func guest(ofSession session: Int) -> DomainID? { lock.withLock { $0.guests[session] } }
    func statistics(of guest: DomainID) -> GuestStatistics? { statistics.withLock { $0 }(guest) }
}

/// A connection the scheduler had no function for: negotiation works, every batch breaks
/// the queue (DEVICE_NEEDS_RESET), so the front-end learns it is not served.
final class RefusedGuestDevice: VirtioDevice {
    let device: any VirtioDevice
    init(_ device: any VirtioDevice) { self.device = device }
    var deviceID: UInt32 { device.deviceID }
    var deviceFeatures: VirtioFeatures { device.deviceFeatures }
    var queueCount: Int { device.queueCount }
    var maxQueueSize: Int { device.maxQueueSize }
    func readConfig() -> [UInt8] { device.readConfig() }
    func process(queue: Int, batch: inout RequestBatch) { batch.abandonQueue() }
    func reset() { device.reset() }
}
