/// The direction of a device access to guest memory.
@frozen
public enum MemoryAccess: UInt8, Hashable, Sendable {
    /// The device reads (a device-readable buffer, a ring area, an indirect table).
    case read = 1
    /// The device writes (a device-writable buffer, the used ring).
    case write = 2
}

/// Why a device-visible address could not be resolved to host memory.
///
/// The fault kinds cover every translator of the project: identity (guest-physical), grant
/// handles and IOVAs. A fault is the peer's doing; the queue that met it breaks, the process
/// does not (DESIGN §3; IOM-DEV-05, IOM-DEV-06).
@frozen
public struct TranslationFault: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Hashable, Sendable {
        /// The address lies outside every region the device may reach.
        case outOfRange
        /// The address is not a well-formed handle for the current mode (for example a
        /// guest-physical address where a grant handle is required).
        case malformedHandle
        /// The grant entry does not permit access.
        case notGranted
        /// The grant entry grants access to another domain.
        case wrongDomain
        /// A write through a read-only grant or mapping.
        case readOnly
        /// The grant's frame lies outside the granting domain's shared region.
        case frameOutOfRange
        /// The grant was revoked.
        case revoked
        /// No IOTLB entry covers the address (IOVA mode); a miss may be reported to the peer.
        case notMapped
        /// The mapping does not allow this access (write-only mapping read, for instance).
        case permissionDenied
        /// A structure that must be contiguous in host memory (a ring area) is not.
        case notContiguous
        /// The mapper's resources for this peer are exhausted (too many mappings).
        case exhausted
        /// A miss reported to the front-end again and again and never answered with a mapping
        /// (IOVA mode, GHT-IOVA-07): the address is treated as unmapped for good.
        case missUnanswered
        /// The memory behind the address was taken away under the device: the peer shrank a
        /// shared file the back-end maps (GHT-LIFE-03). Nothing read from it can be trusted.
        case memoryLost
    }

    public var kind: Kind
    /// The device-visible address whose translation failed.
    public var address: UInt64
    /// The length of the access that failed.
    public var length: Int
    public var access: MemoryAccess

    @inlinable
    public init(_ kind: Kind, address: UInt64, length: Int, access: MemoryAccess) {
        self.kind = kind
        self.address = address
        self.length = length
        self.access = access
    }

    public var description: String {
        "TranslationFault(\(kind), address: 0x\(String(address, radix: 16)), length: \(length), \(access))"
    }
}

/// The outcome of one translation: a host range, or the kind of fault.
///
/// Two words, returned in registers. (The translator requirement returns this rather than
/// throwing: Swift 6.3 does not devirtualize a protocol requirement with typed throws in
/// generic code, which would put a witness-table call on every descriptor.)
///
/// Success is told by the sign of `value`: a count on success, `-1 - kind` on a fault. A
/// translator that returns the caller's (non-negative) length therefore lets the compiler
/// drop the success test once the call is inlined, which a test of the pointer would not.
@frozen
public struct TranslationResult {
    @usableFromInline let base: UnsafeMutableRawPointer?
    @usableFromInline let value: Int

    @inlinable
    init(base: UnsafeMutableRawPointer?, value: Int) {
        self.base = base
        self.value = value
    }

    /// The translation succeeded with `range`.
    @inlinable
    public static func success(_ range: HostRange) -> TranslationResult {
        TranslationResult(base: range.base, value: range.count)
    }

    /// The translation failed with a fault of `kind`.
    @inlinable
    public static func failure(_ kind: TranslationFault.Kind) -> TranslationResult {
        TranslationResult(base: nil, value: -1 &- Int(kind.rawValue))
    }

    /// Whether the translation succeeded.
    @inlinable
    public var succeeded: Bool { value >= 0 }

    /// The range, or `nil` on a fault.
    @inlinable
    public var range: HostRange? {
        guard succeeded else { return nil }
        return HostRange(unsafeBase: base.unsafelyUnwrapped, count: value)
    }

    /// The fault kind, or `nil` on success.
    @inlinable
    public var faultKind: TranslationFault.Kind? {
        succeeded ? nil : TranslationFault.Kind(rawValue: UInt8(truncatingIfNeeded: -1 &- value)) ?? .outOfRange
    }
}

/// Resolves device-visible addresses to host memory, checking every access.
///
/// This is the memory-access abstraction the rings are generic over: identity
/// (guest-physical), grant handles and IOVAs all plug into the same parameter. A translator
/// is a small value holding resolved pointers (DESIGN §5): copying it is free and its calls
/// specialize and inline into the ring code.
public protocol MemoryTranslator: Sendable {
    /// Resolves the start of `[address, address + length)` for `access`.
    ///
    /// Succeeds with a non-empty range of at most `length` bytes (exactly `length` when the
    /// whole span is contiguous in host memory); callers that need more continue at
    /// `address + result.count`. A zero `length` yields an empty range if `address` itself is
    /// reachable. Fails when the start cannot be reached with this access.
    func resolve(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult

    /// Whether the translator holds so many mappings for the chains in flight that the batch
    /// should end at the next chain boundary, so that its quiescent point can release them
    /// (GHT-DMA-03: a grant IOTLB's parked evictions). Asked once per chain; by default never.
    var wantsQuiescentPoint: Bool { get }
}

extension MemoryTranslator {
    @inlinable
    public var wantsQuiescentPoint: Bool { false }
}

extension MemoryTranslator {
    /// Resolves the start of `[address, address + length)` for `access`, as
    /// ``resolve(_:length:access:)`` does, throwing the fault.
    @inlinable @inline(__always)
    public func translate(_ address: UInt64, length: Int, access: MemoryAccess) throws(TranslationFault) -> HostRange {
        let result = resolve(address, length: length, access: access)
        guard result.succeeded else {
            throw TranslationFault(result.faultKind ?? .outOfRange, address: address, length: length, access: access)
        }
        return HostRange(unsafeBase: result.base.unsafelyUnwrapped, count: result.value)
    }

    /// Resolves all of `[address, address + length)`, which must be contiguous in host memory
    /// (ring areas, which are translated once when a queue is enabled).
    @inlinable
    public func translateContiguous(_ address: UInt64, length: Int, access: MemoryAccess) throws(TranslationFault) -> HostRange {
        let range = try translate(address, length: length, access: access)
        guard range.count == length else {
            throw TranslationFault(.notContiguous, address: address, length: length, access: access)
        }
        return range
    }

    /// Resolves the start of `segment` with the access its direction allows; a fault becomes
    /// ``VirtqueueError/memoryFault(_:)``, the error that breaks the queue being processed.
    @inlinable @inline(__always)
    public func translate(_ segment: ChainSegment) throws(VirtqueueError) -> HostRange {
        do {
            return try translate(segment.address, length: Int(segment.length), access: segment.access)
        } catch {
            throw .memoryFault(error)
        }
    }
}
