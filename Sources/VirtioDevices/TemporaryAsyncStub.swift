import VirtioCore
import VirtioTransport
// TEMPORARY: compile-check stand-in for the lead's API; deleted at the merge.
public struct InFlightRequest: @unchecked Sendable {
    let r: FragmentReader
    let w: FragmentWriter
    public func reader() -> FragmentReader { r }
    public func writer() -> FragmentWriter { w }
    @discardableResult public func complete(with writer: FragmentWriter) -> Bool { true }
}
extension RequestBatch {
    public mutating func completeLater(_ i: Int) -> InFlightRequest { InFlightRequest(r: reader(i), w: writer(i)) }
}
