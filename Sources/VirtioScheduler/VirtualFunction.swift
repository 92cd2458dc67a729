import Synchronization
import VirtioCore

/// One device context that serves one guest at a time (DESIGN §6): the registers holding the
/// loaded guest's context, the device model watching the requests in flight, and a status
/// word anyone can read without taking the function.
///
/// The scheduler alone hands the function to a guest; the holder reaches the model and the
/// registers through ``DeviceScheduler/withFunction(_:_:)`` with its lease.
public final class VirtualFunction<Model: DeviceModel>: Sendable {
    public let index: Int
    /// State, owner and turn packed in one word, with the time: one 16-byte atomic, so a
    /// reader never sees the owner of one state with the time of another.
    private let published = Atomic<WordPair>(WordPair(first: 0, second: 0))
    let core = Locked(Core())

    /// What the holder and the scheduler change under the function's lock.
    struct Core {
        var model = Model()
        /// The context loaded (the guest whose requests the function serves now or served last).
        var registers: GuestContext<Model.Rules>?
        /// The lease generation allowed in: a cut-off or a switch moves it on.
        var generation: UInt64 = 0
        var switches = 0
        var scrubs = 0
        /// Switches attempted while the model was not reusable: refused, and counted because
        /// it would be a scheduler bug (GHT-SCH-04).
        var refusedSwitches = 0
    }

    init(index: Int) { self.index = index }

    /// The function's state, owner and since when, read with one atomic load (GHT-SCH-03).
    public var status: VirtualFunctionStatus {
        let pair = published.load(ordering: .acquiring)
        let word = UInt64(pair.first)
        let owner = UInt16(truncatingIfNeeded: word >> 2)
        return VirtualFunctionStatus(state: VirtualFunctionStatus.State(rawValue: UInt8(word & 3)) ?? .idle,
                                     owner: owner == 0 ? nil : DomainID(owner),
                                     sinceNanoseconds: UInt64(pair.second), turns: word >> 34)
    }

    func publish(_ state: VirtualFunctionStatus.State, owner: DomainID?, turns: UInt64, now: UInt64) {
        let word = UInt64(state.rawValue) | UInt64(owner?.rawValue ?? 0) << 2 | turns << 34
        published.store(WordPair(first: UInt(word), second: UInt(now)), ordering: .releasing)
    }

    /// The counters of the function: context switches, scrubs, refused switches.
    public var counters: (switches: Int, scrubs: Int, refusedSwitches: Int) {
        core.withLock { ($0.switches, $0.scrubs, $0.refusedSwitches) }
    }

    /// The model's residue and the loaded context, for checking a scrub (tests, the demo).
    public var inspection: (residue: [UInt8], registers: GuestContext<Model.Rules>?, inFlight: Int) {
        core.withLock { ($0.model.residue, $0.registers, $0.model.inFlight) }
    }
}

extension VirtualFunction.Core {
    /// GHT-SCH-04, GHT-SCH-05: saves the loaded context and loads `incoming`, only at a reusable
    /// point. Returns the saved context, or `nil` in `refused` when the model is not reusable.
    mutating func switchContext(to incoming: GuestContext<Model.Rules>?) -> (saved: GuestContext<Model.Rules>?, refused: Bool) {
        guard model.isReusable else {
            refusedSwitches += 1
            return (nil, true)
        }
        let saved = registers
        registers = incoming
        model.load(incoming?.rules)
        switches += 1
        return (saved, false)
    }

    /// GHT-SCH-08: function-level reset: the model forgets what was in flight and every staged
    /// byte, the registers are cleared, and no old lease gets in again.
    mutating func scrub() {
        model.reset()
        registers = nil
        generation &+= 1
        scrubs += 1
    }
}

extension VirtualFunction {
    /// Measures the context switch alone: `rounds` save-and-restore pairs alternating between
    /// two contexts on a function nobody uses (`virtio-grant bench sched`).
    public static func measureContextSwitch(_ a: GuestContext<Model.Rules>, _ b: GuestContext<Model.Rules>, rounds: Int) -> Int {
        let function = VirtualFunction(index: 0)
        var saved = 0
        for r in 0..<rounds {
            let out = function.core.withLock { $0.switchContext(to: r & 1 == 0 ? a : b).saved }
            if out != nil { saved += 1 }
        }
        return saved
    }
}
