import Testing
import VirtioConformance

/// The suite's split ring: the public scripted front-end/back-end of `VirtioConformance`.
typealias RingHarness = SplitRingHarness

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct TestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}

extension Tag {
    @Tag static var ring: Self
    @Tag static var hostile: Self
    @Tag static var wire: Self
}
