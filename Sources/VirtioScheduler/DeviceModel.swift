import VirtioCore
import VirtioTransport

/// The VPIO idea (DESIGN §6): a small state machine per device type, fed with every request a
/// guest starts and finishes on a virtual function, that answers two questions the scheduler
/// cannot answer alone —
///
/// - is the function reusable now (nothing in flight, nothing half-programmed), so that it may
///   be handed to another guest (GHT-MDL-01), and
/// - is this request legitimate for the guest whose context is loaded (GHT-MDL-02, GHT-MDL-03).
///   Every segment of the request was already resolved through the mapper with the access its
///   direction needs (the transport's GHT-BRK-04: a handle the guest did not grant never reaches
///   the model); the model adds the device's own rules, such as a block guest's sector window.
///
/// A model is a value held by its virtual function and updated under the function's lock, once
/// per request: an update costs tens of nanoseconds (`virtio-grant bench sched`).
public protocol DeviceModel: Sendable {
    /// What a guest may make the device do, loaded with its context (a block guest's sectors,
    /// a network guest's address).
    associatedtype Rules: Sendable, Equatable

    /// A model with nothing in flight and no rules loaded.
    init()
    /// The rules of the guest whose context is loaded; `nil`: none (every request is denied).
    var rules: Rules? { get }
    /// Loads a guest's rules (context restore) or unloads them.
    mutating func load(_ rules: Rules?)
    /// Checks a request before the device acts on it; an allowed request is in flight until
    /// ``finish(queue:)``.
    mutating func start(_ request: inout ModelRequest) -> ModelVerdict
    /// An allowed request of `queue` completed.
    mutating func finish(queue: Int)
    /// Requests started and not finished.
    var inFlight: Int { get }
    /// Whether the function can be handed to another guest now.
    var isReusable: Bool { get }
    /// Function-level reset (the scrub after a cut-off): forgets the requests in flight, every
    /// staged byte and the loaded rules.
    mutating func reset()
    /// The device-internal bytes the model keeps about the last requests (staged headers,
    /// addresses): what a scrub must clear before the next guest.
    var residue: [UInt8] { get }
    /// Answers a denied request the way the device answers an illegal one (a block device:
    /// IOERR in the status byte), so that the guest's driver sees a completion, not a hang.
    static func completeDenied(_ i: Int, in batch: inout RequestBatch)
}

/// What a device model sees of one request before the device acts on it: the byte counts and
/// a private copy of the bytes the model decides on (GHT-ONE-01). The model never reads shared
/// memory: ``stage(upTo:)`` copies the header once, and the scheduled device hands the device
/// that same copy (``RequestBatch/commit(_:)``), so a front-end that rewrites the header after
/// the check changes nothing the device acts on.
public struct ModelRequest {
    /// The queue the request came from.
    public let queue: Int
    /// The request's private copy, as staged so far.
    public private(set) var staged: StagedRequest

    public var readableBytes: Int { staged.readableBytes }
    public var writableBytes: Int { staged.writableBytes }

    public init(queue: Int, staged: StagedRequest) {
        self.queue = queue
        self.staged = staged
    }

    /// A request over `reader` outside any batch (benchmarks, model tests).
    public init(queue: Int, reader: FragmentReader, writableBytes: Int) {
        self.init(queue: queue, staged: .detached(reader, writableBytes: writableBytes))
    }

    /// Copies the readable bytes up to `count` into the private copy (once each) and returns a
    /// reader over the copy from the first byte (``StagedRequest/stage(upTo:)``).
    public mutating func stage(upTo count: Int) -> StagedReader { staged.stage(upTo: count) }
}

/// A device model's answer for one request.
public enum ModelVerdict: Hashable, Sendable {
    case allowed
    /// The device must not act on the request: `rule` names the requirement it breaks.
    case denied(rule: String, reason: String)

    public var isAllowed: Bool { self == .allowed }
}

/// The model of a device with no rules of its own (the checksum and echo devices): it counts
/// requests in flight, and every request resolved through the mapper is legitimate.
public struct OpaqueDeviceModel: DeviceModel {
    public struct Rules: Sendable, Equatable {
        public init() {}
    }

    public private(set) var rules: Rules?
    public private(set) var inFlight = 0

    public init() {}

    public mutating func load(_ rules: Rules?) { self.rules = rules }

    public mutating func start(_ request: inout ModelRequest) -> ModelVerdict {
        guard rules != nil else { return .denied(rule: "GHT-MDL-02", reason: "no guest context loaded") }
        inFlight += 1
        return .allowed
    }

    public mutating func finish(queue: Int) { inFlight -= 1 }
    public var isReusable: Bool { inFlight == 0 }
    public mutating func reset() { self = OpaqueDeviceModel() }
    public var residue: [UInt8] { [] }
    public static func completeDenied(_ i: Int, in batch: inout RequestBatch) { batch.complete(i, usedLength: 0) }
}
