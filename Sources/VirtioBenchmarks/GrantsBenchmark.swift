import VirtioCore
import VirtioGrants

/// `virtio-grant bench grants`: the costs of the grant table and the mapper, per CPU-second of
/// the measuring thread.
public struct GrantsBenchmark: Sendable {
    /// CPU-seconds per run.
    public var seconds: Double
    /// Runs per measurement; the median is reported.
    public var runs: Int

    public init(seconds: Double, runs: Int) {
        self.seconds = seconds
        self.runs = runs
    }

    /// Median operations per CPU-second of `body` (which performs `opsPerCall` operations).
    func rate(opsPerCall: Int, _ body: () -> Void) -> Double {
        medianRate(seconds: seconds, runs: runs, opsPerCall: opsPerCall, body)
    }

    func line(_ name: String, _ key: String, _ value: Double, decimals: Int = 0) -> String {
        var l = JSONLine()
        l.add("workload", "grants")
        l.add("operation", name)
        l.add(key, value, decimals: decimals)
        l.add("runs", runs)
        return l.text
    }

    public func run() {
        let frames = GuestMemoryRegion(size: 1024 * GrantHandle.pageSize)
        let tableRegion = GuestMemoryRegion(size: 4096 * GrantEntry.size)
        let table = GrantTable(table: tableRegion.range, domain: DomainID(1), frameCount: 1024)
        let mapper = GrantMapper(table: tableRegion.range, granter: DomainID(1), frames: frames.range, domain: DomainID(0), owners: [tableRegion, frames])
        let backEnd = DomainID(0)

        let grantEnd = rate(opsPerCall: 256) {
            for f in 0..<256 {
                let ref = try! table.grant(frame: UInt32(f), to: backEnd, readOnly: false)
                _ = try! table.endAccess(ref)
            }
        }
        print(line("grant+endAccess", "pairs_per_cpu_s", grantEnd))

        let ref = try! table.grant(frame: 7, to: backEnd, readOnly: false)
        let mapUnmap = rate(opsPerCall: 256) {
            for _ in 0..<256 {
                let m = try! mapper.map(ref, access: .write)
                try! mapper.unmap(m)
            }
        }
        print(line("map+unmap", "pairs_per_cpu_s", mapUnmap))

        // IOTLB hits: 512 granted pages, all cached, translated round-robin.
        let first = try! table.grant(frames: (0..<512).map { UInt32($0) }, to: backEnd, readOnly: false)
        let iotlb = GrantIOTLB(mapper: mapper, capacity: 1024)
        let translator = iotlb.translator
        var sink: UInt = 0
        let handles = (0..<512).map { GrantHandle(reference: first.advanced(by: $0), offset: ($0 * 64) % 4000).rawValue }
        for h in handles { sink &+= try! translator.translate(h, length: 64, access: .read).startAddress }
        let translations = rate(opsPerCall: handles.count * 64) {
            for _ in 0..<64 {
                for h in handles { sink &+= Self.translate(translator, h) }
            }
        }
        print(line("iotlb-hit-translate", "ns", 1e9 / translations, decimals: 2))
        let stats = iotlb.statistics
        var hit = JSONLine()
        hit.add("workload", "grants")
        hit.add("operation", "iotlb-hit-rate")
        hit.add("hit_rate", stats.hitRate, decimals: 6)
        hit.add("misses", stats.misses)
        print(hit.text)

        // Copies of 4 KiB between a grant and local memory.
        let local = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { local.deallocate() }
        local.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let copies = rate(opsPerCall: 64) {
            for i in 0..<64 {
                try! mapper.copy(GrantCopy(first.advanced(by: i), offset: 0, .toGrant(UnsafeRawBufferPointer(local))))
            }
        }
        print(line("copy-4KiB", "gbytes_per_cpu_s", copies * 4096 / 1e9, decimals: 3))
        if sink == 42 { print("") }
    }

    @inline(never)
    static func translate(_ t: GrantTranslator, _ handle: UInt64) -> UInt {
        (try? t.translate(handle, length: 64, access: .read))?.startAddress ?? 0
    }
}
