import VirtioCore
import VirtioGrants

/// Fuzz target: a grant table and its mapper, with a hostile granter.
///
/// Input: a sequence of operations on a 64-entry table over 16 frames — grant, end access
/// (now or deferred), map, unmap (twice, too), batched map and unmap, copies, translations
/// through an 8-entry IOTLB, revoke requests, invalidations — interleaved with raw writes of
/// any flags, domid and frame into entries, as a hostile front-end may make.
///
/// Checked inside:
/// - no host range handed out lies outside the frames region;
/// - nothing is mapped, translated or copied for writing unless the entry allowed writing when
///   the mapping was made (the IOTLB may keep a mapping made while it was allowed);
/// - end of access never succeeds while the back-end maps the page (for entries the hostile
///   writes left alone: a granter that clears its own in-use bits only lies to itself);
/// - an entry with a live mapping of a kind keeps that kind's in-use bit (same condition);
/// - a double unmap is refused, and counts never go negative;
/// - after a revoke request and a quiescent point, the IOTLB no longer holds the reference;
/// - a page translated since the last quiescent point (a chain in flight may use it) keeps its
///   mapping and in-use bit, whatever the IOTLB evicted meanwhile (GHT-DMA-01).
public enum GrantTarget {
    static let entries = 64
    static let frameCount = 16
    static let frontEnd = DomainID(1), backEnd = DomainID(0)

    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let frames = GuestMemoryRegion(size: frameCount * GrantHandle.pageSize)
        let tableMemory = GuestMemoryRegion(size: entries * GrantEntry.size)
        let table = GrantTable(table: tableMemory.range, domain: frontEnd, frameCount: frameCount, deferredCapacity: 4)
        if input.bool() { table.setQuota(Int(input.byte() % 32), for: backEnd) }
        let mapper = GrantMapper(table: tableMemory.range, granter: frontEnd, frames: frames.range, domain: backEnd, maxMappings: 24, owners: [tableMemory, frames])
        let iotlb = GrantIOTLB(mapper: mapper, capacity: 8)
        var model = Model(table: table, mapper: mapper, iotlb: iotlb, frames: frames.range)
        var steps = 0
        while !input.isExhausted && steps < 1024 {
            steps += 1
            model.step(&input)
            model.checkInUseBits()
        }
        iotlb.invalidateAll()
        for m in model.mappings { try? mapper.unmap(m) }
        for r in 0..<entries {
            let ref = GrantReference(UInt32(r))
            fuzzCheck(mapper.mappingCount(ref) == (0, 0), "mappings left after every holder let go: \(ref)")
        }
    }

    struct Model {
        let table: GrantTable
        let mapper: GrantMapper
        let iotlb: GrantIOTLB
        let frames: HostRange
        var mappings: [GrantMapping] = []
        var unmapped: [GrantMapping] = []
        /// Entries a hostile write touched since they were last granted.
        var tampered = Set<UInt32>()
        /// References the IOTLB cached a write mapping of, made while the entry allowed writing.
        var writable = Set<UInt32>()
        /// Translations since the last quiescent point: what chains in flight may still reach.
        var inFlight: [(ref: GrantReference, access: MemoryAccess)] = []

        init(table: GrantTable, mapper: GrantMapper, iotlb: GrantIOTLB, frames: HostRange) {
            self.table = table
            self.mapper = mapper
            self.iotlb = iotlb
            self.frames = frames
        }

        func reference(_ input: inout FuzzInput) -> GrantReference {
            GrantReference(UInt32(input.byte()) % UInt32(GrantTarget.entries + 2))   // a few past the end, too
        }

        func entry(_ ref: GrantReference) -> GrantEntry? {
            Int(ref.rawValue) < table.entries.count ? table.entries.load(ref) : nil
        }

        /// Whether `entry` lets the back-end map for `access` (the mapper's rules, restated).
        func allows(_ entry: GrantEntry?, _ access: MemoryAccess) -> Bool {
            guard let e = entry else { return false }
            return e.flags.intersection(.typeMask) == .permitAccess && !e.flags.contains(.subPage) && e.domain == GrantTarget.backEnd
                && (access == .read || !e.flags.contains(.readOnly)) && Int(e.frame) < GrantTarget.frameCount
        }

        func inFrames(_ range: HostRange) -> Bool {
            range.startAddress >= frames.startAddress && range.startAddress + UInt(range.count) <= frames.startAddress + UInt(frames.count)
        }

        mutating func step(_ input: inout FuzzInput) {
            let op = input.byte() % 13
            defer { fuzzTrace("op \(op): mappings \(mappings.map { "\($0.reference)/\($0.access)" }), writable \(writable.sorted()), tampered \(tampered.sorted())") }
            switch op {
            case 0:
                let frame = UInt32(input.byte() % UInt8(GrantTarget.frameCount + 2))
                if let ref = try? table.grant(frame: frame, to: GrantTarget.backEnd, readOnly: input.bool()) {
                    fuzzCheck(Int(frame) < GrantTarget.frameCount, "granted a frame outside the region")
                    regranted(ref)
                }
            case 1:
                let count = 1 + Int(input.byte() % 4), first = UInt32(input.byte() % UInt8(GrantTarget.frameCount))
                if let ref = try? table.grant(frames: (0..<UInt32(count)).map { (first + $0) % UInt32(GrantTarget.frameCount) },
                                              to: GrantTarget.backEnd, readOnly: input.bool()) {
                    for k in 0..<count { regranted(ref.advanced(by: k)) }
                }
            case 2, 3:
                let ref = reference(&input)
                let deferred = input.bool()
                guard let result = try? (deferred ? table.endAccessOrDefer(ref) : table.endAccess(ref)) else { break }
                if result == .ended && !tampered.contains(ref.rawValue) {
                    fuzzCheck(mapper.mappingCount(ref) == (0, 0) && !iotlb.contains(ref), "end of access succeeded while \(ref) is mapped")
                }
                if input.bool() { retryDeferred() }
            case 4:
                // The hostile granter writes anything into an entry.
                let ref = GrantReference(UInt32(input.byte()) % UInt32(GrantTarget.entries))
                let flags = GrantFlags(rawValue: input.integer(UInt16.self))
                let domain = input.bool() ? GrantTarget.backEnd : DomainID(input.integer(UInt16.self))
                let frame = input.bool() ? UInt32(input.byte() % 20) : input.integer(UInt32.self)
                table.entries.store(GrantEntry(flags: flags, domain: domain, frame: frame), at: ref)
                tampered.insert(ref.rawValue)
                fuzzTrace("hostile write \(ref): \(table.entries.load(ref))")
            case 5:
                let ref = reference(&input), access: MemoryAccess = input.bool() ? .write : .read
                let before = entry(ref)
                if let m = try? mapper.map(ref, access: access) {
                    fuzzCheck(allows(before, access), "mapped \(ref) for \(access) against \(String(describing: before))")
                    fuzzCheck(inFrames(m.page), "a mapping outside the frames region")
                    mappings.append(m)
                }
            case 6:
                guard !mappings.isEmpty || !unmapped.isEmpty else { break }
                if input.bool() || unmapped.isEmpty, !mappings.isEmpty {
                    let m = mappings.remove(at: input.index(below: mappings.count))
                    do { try mapper.unmap(m) } catch { fuzzCheck(false, "a live mapping could not be unmapped: \(error)") }
                    unmapped.append(m)
                    if unmapped.count > 8 { unmapped.removeFirst() }
                } else {
                    let m = unmapped[input.index(below: unmapped.count)]
                    fuzzCheck((try? mapper.unmap(m)) == nil, "a mapping was unmapped twice")
                }
            case 7:
                let ref = reference(&input), access: MemoryAccess = input.bool() ? .write : .read
                let offset = Int(input.integer(UInt16.self) % 4096), length = Int(input.integer(UInt16.self) % 8192)
                let before = entry(ref)
                let cached = iotlb.contains(ref)
                fuzzTrace("translate \(ref)+\(offset) len \(length) \(access), cached \(cached), entry \(String(describing: before))")
                do {
                    let range = try iotlb.translator.translate(GrantHandle(reference: ref, offset: offset).rawValue, length: length, access: access)
                    fuzzCheck(inFrames(range) && range.count <= length, "a translation outside the frames region")
                    inFlight.append((ref, access))
                    if access == .write {
                        fuzzCheck(allows(before, .write) || (cached && writable.contains(ref.rawValue)), "a write translation of \(ref) not allowed")
                        // The IOTLB may now hold write mappings of every page the request
                        // touches: a crossing maps the following references while it looks for
                        // pages that follow in host memory, even where the range stops short.
                        let pages = (offset + max(length, 1) - 1) / 4096 + 1
                        for k in 0..<pages { writable.insert(ref.rawValue &+ UInt32(k)) }
                    }
                } catch {
                    // Refusals are the mapper's to make (revoking, out of mappings, crossing into an ungranted page).
                }
            case 8:
                let ref = reference(&input), toGrant = input.bool()
                let offset = Int(input.integer(UInt16.self) % 4200), length = Int(input.integer(UInt16.self) % 4200)
                let before = entry(ref)
                var buffer = [UInt8](repeating: 0xAB, count: length)
                let ok = buffer.withUnsafeMutableBytes { b -> Bool in
                    let op = toGrant ? GrantCopy(ref, offset: offset, .toGrant(UnsafeRawBufferPointer(b))) : GrantCopy(ref, offset: offset, .fromGrant(b))
                    return (try? mapper.copy(op)) != nil
                }
                if ok && length > 0 {   // an empty copy touches nothing, so it needs no grant
                    fuzzCheck(allows(before, toGrant ? .write : .read), "copied \(toGrant ? "into" : "from") \(ref) against \(String(describing: before))")
                    fuzzCheck(offset + length <= 4096, "a copy past the page")
                }
            case 9:
                let ref = reference(&input)
                mapper.requestRevoke(ref)
                iotlb.quiesce()
                inFlight.removeAll()
                fuzzCheck(!iotlb.contains(ref), "the IOTLB still holds \(ref) after a revoke and a quiescent point")
                writable.remove(ref.rawValue)
                _ = mapper.takeCompletedRevocations()
            case 10:
                // Invalidations and quiescent points come only where no chain is in flight.
                switch input.byte() % 3 {
                case 0:
                    let ref = reference(&input)
                    iotlb.invalidate(ref)
                    fuzzCheck(!iotlb.contains(ref), "invalidate kept \(ref)")
                    writable.remove(ref.rawValue)
                case 1:
                    iotlb.invalidateAll()
                    writable.removeAll()
                default:
                    iotlb.quiesce()
                    fuzzCheck(iotlb.parkedCount == 0, "a quiescent point left mappings parked")
                }
                inFlight.removeAll()
            case 11:
                let requests = (0..<(1 + Int(input.byte() % 6))).map { _ in GrantMapRequest(reference(&input), access: input.bool() ? .write : .read) }
                let before = requests.map { entry($0.reference) }
                let results = mapper.map(batch: requests)
                fuzzCheck(results.count == requests.count, "a batch result per element")
                for (i, r) in results.enumerated() {
                    if case .success(let m) = r {
                        fuzzCheck(allows(before[i], requests[i].access), "batch mapped \(m.reference) against its entry")
                        mappings.append(m)
                    }
                }
            default:
                let n = min(mappings.count, 1 + Int(input.byte() % 4))
                var batch = Array(mappings.suffix(n))
                mappings.removeLast(n)
                if input.bool(), let again = batch.first { batch.append(again) }   // the same mapping twice in one batch
                let results = mapper.unmap(batch: batch)
                fuzzCheck(results.count == batch.count, "a batch result per element")
                for (i, r) in results.enumerated() {
                    let duplicate = batch[..<i].contains(batch[i])
                    switch r {
                    case .success: fuzzCheck(!duplicate, "a mapping unmapped twice in one batch")
                    case .failure: fuzzCheck(duplicate, "a live mapping could not be unmapped")
                    }
                }
            }
        }

        /// A fresh grant makes a tampered entry trustworthy again, unless the back-end still maps
        /// it: then the hostile write may have cleared the in-use bit that would have kept the
        /// reference from being reused, and the granter cannot know (it lied to itself).
        mutating func regranted(_ ref: GrantReference) {
            if mapper.mappingCount(ref) == (0, 0) && !iotlb.contains(ref) { tampered.remove(ref.rawValue) }
        }

        /// Retries deferred ends of access; none may succeed while the page is mapped.
        func retryDeferred() {
            for ended in table.retryDeferred() where !tampered.contains(ended.rawValue) {
                fuzzCheck(mapper.mappingCount(ended) == (0, 0) && !iotlb.contains(ended), "a deferred end succeeded while \(ended) is mapped")
            }
        }

        /// An entry with a live mapping of a kind keeps that kind's in-use bit (untampered entries),
        /// and so does one translated since the last quiescent point (GHT-DMA-01).
        func checkInUseBits() {
            for m in mappings where !tampered.contains(m.reference.rawValue) {
                guard let e = entry(m.reference) else { continue }
                fuzzCheck(e.flags.contains(m.access == .write ? .writing : .reading), "\(m.reference) lost its in-use bit while mapped")
            }
            for t in inFlight where !tampered.contains(t.ref.rawValue) {
                let held = mapper.mappingCount(t.ref)
                fuzzCheck((t.access == .write ? held.writers : held.readers) > 0, "\(t.ref) unmapped under a chain in flight")
                guard let e = entry(t.ref) else { continue }
                fuzzCheck(e.flags.contains(t.access == .write ? .writing : .reading), "\(t.ref) lost its in-use bit under a chain in flight")
            }
        }
    }
}
