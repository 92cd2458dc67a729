import VirtioScheduler

/// `serve --vfs N ...`: the options of a ``SharedDevice`` (the connections share N virtual
/// functions of one device in turns, Spec/scheduler.md), parsed into its configuration.
enum SchedulerOptions {
    static let names: Set<String> = ["vfs", "mapping", "policy", "weights", "slice-ms", "cutoff-ms", "quantum", "window-sectors", "guest"]

    /// The shared device's configuration, or `nil` without `--vfs`.
    static func parse(_ options: Options, device: String) throws(UsageError) -> SharedDeviceConfiguration? {
        guard options.string("vfs") != nil else {
            if let extra = names.first(where: { options.string($0) != nil }) {
                throw UsageError(description: "--\(extra) needs --vfs")
            }
            return nil
        }
        var shared = SharedDeviceConfiguration()
        shared.functionCount = try options.int("vfs", default: 1, in: 1...64)
        switch try options.choice("mapping", default: "n:m", from: ["1:1", "1:n", "n:m"]) {
        case "1:1": shared.scheduler.mapping = .oneToOne
        case "1:n": shared.scheduler.mapping = .shared(0)
        default: shared.scheduler.mapping = .pool
        }
        let quantum = try options.int("quantum", default: 32, in: 1...(1 << 30))
        switch try options.choice("policy", default: "drr", from: ["rr", "drr", "drr-bytes"]) {
        case "rr": shared.scheduler.policy = .roundRobin
        case "drr-bytes": shared.scheduler.policy = .deficitRoundRobin(unit: .bytes, quantum: quantum)
        default: shared.scheduler.policy = .deficitRoundRobin(unit: .requests, quantum: quantum)
        }
        shared.scheduler.sliceNanoseconds = UInt64(try options.int("slice-ms", default: 2, in: 1...10_000)) * 1_000_000
        shared.scheduler.cutOffNanoseconds = UInt64(try options.int("cutoff-ms", default: 100, in: 1...600_000)) * 1_000_000
        shared.model = device == "blk" ? .block : device == "net" ? .network : .opaque
        let named = options.strings("guest")
        if options.string("weights") != nil {
            shared.weights = try options.ints("weights", default: [1], in: 1...1000)
            guard named.isEmpty else { throw UsageError(description: SharedDeviceError.weightsWithNamedGuests.description) }
        }
        if device == "blk" {
            guard options.string("window-sectors") != nil || !named.isEmpty else {
                throw UsageError(description: SharedDeviceError.noWindowSectors.description)
            }
            shared.windowSectors = options.string("window-sectors") == nil ? nil : UInt64(try options.int("window-sectors", default: 1, in: 1...(1 << 40)))
        } else if options.string("window-sectors") != nil {
            throw UsageError(description: "--window-sectors is for --device blk")
        }
        do {
            var guests: [NamedGuest] = []
            for text in named { guests.append(try NamedGuest(parsing: text)) }
            shared.guests = try NamedGuest.validated(guests, model: shared.model, windowSectors: shared.windowSectors)
        } catch {
            throw UsageError(description: error.description)
        }
        return shared
    }
}
