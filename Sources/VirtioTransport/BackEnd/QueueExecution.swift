/// How a queue's worker waits for work (Spec/transport.md §11, GHT-ASY-08).
public enum QueueExecution: Sendable, Hashable {
    /// The worker sleeps on the kick eventfd between drains, with kicks enabled: no CPU when
    /// idle; every burst after an idle moment pays a kick and a wake-up.
    case sleeping
    /// The worker polls the available ring (and the device's completions) with kicks
    /// suppressed, as DPDK's and SPDK's back-ends do. After `idleMicroseconds` without work it
    /// backs off: kicks are enabled again and it sleeps until the next one, so an idle queue
    /// costs no CPU beyond the budget.
    case polling(idleMicroseconds: Int)

    /// Polling with a 50 µs budget.
    public static var polling: QueueExecution { .polling(idleMicroseconds: 50) }

    /// The idle budget in nanoseconds, or `nil` when sleeping.
    var pollBudgetNanoseconds: UInt64? {
        guard case .polling(let us) = self else { return nil }
        return UInt64(max(0, us)) * 1_000
    }
}
