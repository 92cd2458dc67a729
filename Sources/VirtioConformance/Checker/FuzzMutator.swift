/// The fuzzer's mutations, drawn from a seeded generator: values at the edges that the
/// validation rules of Spec/ name (lengths of 0 and past the memory, links past the table,
/// INDIRECT inside an indirect table, index jumps, short payloads, wrong descriptor counts,
/// memory that shrinks or lies past its file), as the hostile check cases use them.
struct FuzzMutator {
    var random: SplitMix64
    let queueSize: Int
    let memorySize: Int

    mutating func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
    mutating func below(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }

    /// A case: a seed of `device` and one to four mutations.
    mutating func next(device: CheckDevice) -> FuzzCase {
        let seeds = FuzzCase.Seed.seeds(for: device == .net ? .net : .blk)
        var c = FuzzCase(seed: pick(seeds))
        for _ in 0..<(1 + below(4)) { c.mutations.append(mutation()) }
        return c
    }

    mutating func mutation() -> FuzzCase.Mutation {
        switch below(20) {
        case 0..<12: return descriptor()
        case 12: return .availIndex(delta: pick([1, 2, UInt16(queueSize), UInt16(queueSize + 1), 1000, 0x8000, 0xFFFF]))
        case 13: return .availHead(pick([1, 3, UInt16(queueSize - 1), UInt16(queueSize), 200, 0xFFFF]))
        case 14, 15: return message()
        case 16: return .truncate(pick([0x8000, 0x9000, 0xA000, memorySize / 2]))
        case 17: return .regionScale(pick([2, 4, 16]))
        default: return .descriptor(.indirect, index: below(4), .flags, pick([4, 5, 6, 7]))
        }
    }

    mutating func descriptor() -> FuzzCase.Mutation {
        let table: FuzzCase.Table = below(3) == 0 ? .indirect : .main
        let index = below(4) == 0 ? below(queueSize) : below(4)
        let field = pick(FuzzCase.Field.allCases)
        let value: UInt64
        switch field {
        case .addr: value = pick([0, 0x1000, 0x2000, 0x3000, UInt64(memorySize) - 1, UInt64(memorySize), UInt64(memorySize) * 2,
                                  0xFFFF_FFFF_FFFF_F000, random.next() % UInt64(memorySize)])
        case .len: value = pick([0, 1, 15, 16, 17, 511, 513, 4096, 0x10000, UInt64(memorySize), 0x8000_0000, 0xFFFF_FFFF])
        case .flags: value = UInt64(below(8))
        case .next: value = pick([0, 1, 2, 3, UInt64(queueSize - 1), UInt64(queueSize), 999, 0xFFFF])
        }
        return .descriptor(table, index: index, field, value)
    }

    /// Messages of the hostile protocol cases: an unknown request, a short or long payload, a
    /// kick or call with too many or too few descriptors, a query at the wrong moment.
    mutating func message() -> FuzzCase.Mutation {
        let request: UInt32 = pick([0, 1, 11, 12, 13, 15, 17, 24, 9999])
        let payload = (0..<pick([0, 4, 8, 12, 40])).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        return .message(request: request, payload: payload, fds: pick([0, 0, 1, 2, 3]))
    }
}
