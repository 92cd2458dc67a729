/// A protection domain the scheduler and the accountant know: the back-end itself, or one guest
/// (a front-end session). Guests are numbered from 1; 0 is the back-end.
public struct DomainID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// The back-end process: owner of what is reserved for the device's own use.
    public static let backEnd = DomainID(0)

    /// Whether this is a guest (not the back-end).
    public var isGuest: Bool { rawValue != 0 }

    public static func < (a: DomainID, b: DomainID) -> Bool { a.rawValue < b.rawValue }

    public var description: String { rawValue == 0 ? "back-end" : "guest\(rawValue)" }
}
