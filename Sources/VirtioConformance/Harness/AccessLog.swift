import VirtioCore

/// One translation a device under test asked for.
public struct AccessRecord: Hashable, Sendable, CustomStringConvertible {
    public var address: UInt64
    public var length: Int
    public var access: MemoryAccess
    /// The fault, if the translation failed (by the script or by the memory itself).
    public var fault: TranslationFault.Kind?

    public var description: String {
        "\(access) 0x\(String(address, radix: 16)) +\(length)\(fault.map { " -> \($0)" } ?? "")"
    }

    /// Whether `[address, address + length)` meets `range`.
    public func overlaps(_ range: Range<UInt64>) -> Bool {
        address < range.upperBound && address &+ UInt64(max(length, 1)) > range.lowerBound
    }
}

/// The mapper log of the conformance harnesses (GHT-CNF-07): every translation the device under
/// test asks for, in order, and the script of what it may reach.
///
/// A script narrows what the memory allows, the way grant permissions do (REQUIREMENTS.md H3):
/// ranges made read-only fault device writes with `readOnly`, unreachable ranges fault every
/// access with `notGranted`. With these, "the device never writes a device-readable buffer"
/// (SPL-DEV-01) or "touches no queue memory before the queue is enabled" (TRN-M-01) are facts
/// of the log, checked for any device.
public final class AccessLog: Sendable {
    private struct State {
        var records: [AccessRecord] = []
        var readOnly: [Range<UInt64>] = []
        var unreachable: [Range<UInt64>] = []
        var recording = true
    }

    private let state = Locked(State())

    public init() {}

    /// Every access so far, in order.
    public var records: [AccessRecord] { state.withLock { $0.records } }

    /// The accesses that failed.
    public var faults: [AccessRecord] { records.filter { $0.fault != nil } }

    /// The accesses that touched `range` with `access` (any access if `nil`).
    public func accesses(to range: Range<UInt64>, _ access: MemoryAccess? = nil) -> [AccessRecord] {
        records.filter { $0.overlaps(range) && (access == nil || $0.access == access) }
    }

    /// Forgets the records (the script stays).
    public func clear() { state.withLock { $0.records.removeAll() } }

    /// Stops or resumes recording (a long run need not keep every access).
    public func setRecording(_ on: Bool) { state.withLock { $0.recording = on } }

    /// From now on, device writes into `range` fault with `readOnly`.
    public func makeReadOnly(_ range: Range<UInt64>) { state.withLock { $0.readOnly.append(range) } }

    /// From now on, every device access into `range` faults with `notGranted`.
    public func makeUnreachable(_ range: Range<UInt64>) { state.withLock { $0.unreachable.append(range) } }

    /// Lifts every restriction.
    public func allowEverything() {
        state.withLock {
            $0.readOnly.removeAll()
            $0.unreachable.removeAll()
        }
    }

    /// The fault the script gives this access, if any; records the access unless recording is
    /// off. `base` is consulted only when the script allows the access.
    func check(_ address: UInt64, length: Int, access: MemoryAccess, base: () -> TranslationResult) -> TranslationResult {
        var record = AccessRecord(address: address, length: length, access: access, fault: nil)
        let scripted: TranslationFault.Kind? = state.withLock { s in
            if s.unreachable.contains(where: { record.overlaps($0) }) { return .notGranted }
            if access == .write, s.readOnly.contains(where: { record.overlaps($0) }) { return .readOnly }
            return nil
        }
        let result = scripted.map { TranslationResult.failure($0) } ?? base()
        record.fault = result.faultKind
        state.withLock { s in
            if s.recording { s.records.append(record) }
        }
        return result
    }
}

/// A translator that asks its log's script first, records the access, then translates with
/// `base`: what the harnesses hand to the device under test.
public struct LoggingTranslator<Base: MemoryTranslator>: MemoryTranslator {
    public let base: Base
    public let log: AccessLog

    public init(_ base: Base, log: AccessLog) {
        self.base = base
        self.log = log
    }

    public func resolve(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult {
        log.check(address, length: length, access: access) { base.resolve(address, length: length, access: access) }
    }

    public var wantsQuiescentPoint: Bool { base.wantsQuiescentPoint }
}
