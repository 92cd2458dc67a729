import VirtioCore
import VirtioTransport

/// What the scheduler keeps for one guest that a live migration carries to the destination
/// back-end (Spec/restart.md §4, GHT-DST-08): the features its driver accepted, its standing in
/// deficit round robin and what it was served so far. Not carried: its weight, functions and
/// device rules (the destination's administrator sets those: a guest's own state may not widen
/// them), and any turn (the device is stopped: no guest holds a function).
public struct GuestMigrationState: Equatable, Sendable {
    public var features: VirtioFeatures
    /// Deficit round robin's deficit: credit left (positive) or a batch's overspend (negative).
    public var deficit: Int64
    public var requests: UInt64
    public var bytes: UInt64
    public var batches: UInt64
    public var turns: UInt64
    public var denied: UInt64

    /// `"VGSD"`: a scheduled device's state.
    static let magic: UInt32 = 0x5647_5344
    static let version: UInt16 = 1
    /// Bytes of the encoded state: magic, version, queue count, then seven 8-byte fields.
    static let byteCount = 4 + 2 + 2 + 7 * 8
    /// The largest debt a loaded state may carry (a batch overspends by at most its bytes).
    static let maximumDebt: Int64 = 1 << 40

    /// The little-endian encoding, for a device of `queueCount` queues.
    func encoded(queueCount: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.byteCount)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        put(Self.magic)
        put(Self.version)
        put(UInt16(truncatingIfNeeded: queueCount))
        put(features.rawValue)
        for value in [UInt64(bitPattern: deficit), requests, self.bytes, batches, turns, denied] { put(value) }
        return bytes
    }

    /// GHT-DST-04: decodes a state the front-end handed over, trusting nothing: its length,
    /// format and version, the queue count of this device, device features it offers, and a
    /// deficit within one allowance (`maximumCredit`) and the largest debt.
    static func decode(_ bytes: [UInt8], queueCount: Int, deviceFeatures: VirtioFeatures,
                       maximumCredit: Int64) throws(DeviceStateError) -> GuestMigrationState {
        guard bytes.count == byteCount else { throw .wrongLength }
        var offset = 0
        func get<T: FixedWidthInteger>(_: T.Type) -> T {
            var value = T.zero
            withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[offset..<offset + MemoryLayout<T>.size]) }
            offset += MemoryLayout<T>.size
            return T(littleEndian: value)
        }
        guard get(UInt32.self) == magic, get(UInt16.self) == version else { throw .unknownFormat }
        let queues = get(UInt16.self)
        guard Int(queues) == queueCount else { throw .invalidValue("queue count \(queues), the device has \(queueCount)") }
        let features = VirtioFeatures(rawValue: get(UInt64.self))
        let extra = features.intersection(.deviceTypeBits).subtracting(deviceFeatures)
        guard extra.isEmpty else { throw .invalidValue("device features \(extra) the device does not offer") }
        let deficit = Int64(bitPattern: get(UInt64.self))
        guard deficit >= -maximumDebt, deficit <= maximumCredit else { throw .invalidValue("deficit \(deficit)") }
        return GuestMigrationState(features: features, deficit: deficit, requests: get(UInt64.self), bytes: get(UInt64.self),
                                   batches: get(UInt64.self), turns: get(UInt64.self), denied: get(UInt64.self))
    }
}

extension DeviceScheduler {
    /// What migrates of `guest`, or `nil` for a guest not registered.
    func migrationState(of guest: DomainID) -> GuestMigrationState? {
        state.withLock { s in
            guard let g = s.guests[guest] else { return nil }
            let features = contexts.withLock { $0[guest]?.features } ?? []
            return GuestMigrationState(features: features, deficit: g.deficit, requests: g.statistics.requests, bytes: g.statistics.bytes,
                                       batches: g.statistics.batches, turns: g.statistics.turns, denied: g.statistics.denied)
        }
    }

    /// The credit a loaded state may bring: one allowance at the guest's weight (none under
    /// round robin, which keeps no deficit).
    func maximumCredit(of guest: DomainID) -> Int64 {
        guard case .deficitRoundRobin(_, let quantum) = configuration.policy else { return 0 }
        return state.withLock { s in s.guests[guest].map { Int64(quantum) * Int64($0.weight) } ?? 0 }
    }

    /// Restores `saved` for `guest` (validated by ``GuestMigrationState/decode``); refused while
    /// the guest holds a function.
    func restore(_ saved: GuestMigrationState, for guest: DomainID) throws(DeviceStateError) {
        try state.withLock { s throws(DeviceStateError) in
            guard let g = s.guests[guest] else { throw .invalidValue("guest \(guest) is not registered") }
            guard g.holding == nil else { throw .invalidValue("guest \(guest) holds a function") }
            s.guests[guest]!.deficit = saved.deficit
            s.guests[guest]!.statistics.requests = saved.requests
            s.guests[guest]!.statistics.bytes = saved.bytes
            s.guests[guest]!.statistics.batches = saved.batches
            s.guests[guest]!.statistics.turns = saved.turns
            s.guests[guest]!.statistics.denied = saved.denied
            contexts.withLock { $0[guest]?.features = saved.features }
        }
    }
}

extension ScheduledDevice {
    /// DEVICE_STATE: the guest's scheduler state (``GuestMigrationState``), then the wrapped
    /// device's own state.
    public func saveState() throws -> [UInt8] {
        guard let saved = scheduler.migrationState(of: guest) else { throw DeviceStateError.invalidValue("guest \(guest) is not registered") }
        return saved.encoded(queueCount: queueCount) + (try device.saveState())
    }

    /// DEVICE_STATE: validates and restores what ``saveState()`` of the source produced.
    public func loadState(_ state: [UInt8]) throws {
        guard state.count >= GuestMigrationState.byteCount else { throw DeviceStateError.wrongLength }
        let saved = try GuestMigrationState.decode(Array(state.prefix(GuestMigrationState.byteCount)), queueCount: queueCount,
                                                   deviceFeatures: deviceFeatures, maximumCredit: scheduler.maximumCredit(of: guest))
        // The wrapped device checks its part first: nothing changes unless all of it loads.
        try device.loadState(Array(state.dropFirst(GuestMigrationState.byteCount)))
        try scheduler.restore(saved, for: guest)
    }
}
