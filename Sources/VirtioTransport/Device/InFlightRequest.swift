import VirtioCore

/// A request its device kept to complete later (``RequestBatch/completeLater(_:)``): the
/// asynchronous half of the device API, as rust-vmm's back-ends and libvhost-user offer it
/// (GHT-ASY-01).
///
/// The device may complete it from any thread, in any order relative to the queue's other
/// requests; the queue's worker adds completions to the used ring in batches, publishes once per
/// wake-up and notifies per the event index (GHT-ASY-02). Until it is completed, the request's
/// memory stays reachable: its fragments, the private copy of what the device decided on, and
/// the mappings behind them (GHT-ASY-05). A handle is a few words and one class reference: it
/// costs no allocation.
public struct InFlightRequest: @unchecked Sendable {
    let table: InFlightTable
    let slot: Int32
    let generation: UInt32
    let fragments: [HostRange]
    let readable: Range<Int>
    let writable: Range<Int>
    /// Where the header a device model validated lives (GHT-ONE-01): kept alive with the request.
    let privateCopies: PrivateCopies?

    /// The request's device-readable and device-writable byte counts.
    public var byteCounts: (readable: Int, writable: Int) {
        (fragments[readable].reduce(0) { $0 + $1.count }, fragments[writable].reduce(0) { $0 + $1.count })
    }

    /// A reader over the request's device-readable bytes.
    public func reader() -> FragmentReader { FragmentReader(fragments, readable) }

    /// A writer over the request's device-writable bytes.
    public func writer() -> FragmentWriter { FragmentWriter(fragments, writable) }

    /// Completes the request with `usedLength` bytes written (at most its writable capacity),
    /// from any thread.
    ///
    /// - Returns: `false`, and nothing happens, when the request was completed already or its
    ///   queue stopped, was reset or broke since the device kept it (GHT-ASY-03, GHT-ASY-04).
    @discardableResult
    public func complete(usedLength: UInt32) -> Bool {
        precondition(Int(usedLength) <= byteCounts.writable, "used length exceeds the request's writable capacity")
        return table.complete(slot: slot, generation: generation, length: usedLength)
    }

    /// Completes the request with what `writer` wrote.
    @discardableResult
    public func complete(with writer: FragmentWriter) -> Bool {
        complete(usedLength: writer.usedLength)
    }
}
