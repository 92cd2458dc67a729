import VirtioCore
import VirtioTransport
import VirtioSystem

/// How a kept request completes: its ring operations are reaped (no system call), its status
/// written, and the request completed to the driver, in the order the kernel finished them.
extension BlockQueueEngine {
    /// Reaps every completion posted and completes each request whose I/O is all done; a
    /// completed write may let held flushes go (GHT-BLK-18).
    func reap() {
        var writeCompleted = false
        ring.reap { completion in
            let index = Int(completion.userData & 0xFFFF_FFFF), part = Int(completion.userData >> 32)
            guard slots.indices.contains(index), slots[index].request != nil, slots[index].pending > 0 else { return }
            account(completion, index, part)
            slots[index].pending -= 1
            if slots[index].pending == 0 {
                if slots[index].kind == .write { writeCompleted = true }
                finish(index)
            }
        }
        if writeCompleted { releaseFlushes() }
    }

    /// Takes one operation's result into its request's slot.
    private func account(_ completion: IOUringCompletion, _ index: Int, _ part: Int) {
        let slot = slots[index]
        switch slot.kind {
        case .read:
            // GHT-BLK-20: a short read is an error, unless the file now ends where it stopped
            // (an image shrunk behind the device's back reads as zeros, as synchronously).
            guard let got = try? completion.value("readv") else { return slots[index].failed = true }
            if got < slot.bytes {
                let end = (try? file.currentSize()) ?? .max
                if end <= slot.offset + UInt64(got) { slots[index].produced = got } else { slots[index].failed = true }
            }
        case .write:
            // GHT-BLK-20: a short write is an error.
            if (try? completion.value("writev")) != slot.bytes { slots[index].failed = true }
        case .flush:
            if (try? completion.value("fdatasync")) == nil { slots[index].failed = true }
        case .ranges:
            guard slot.ranges.indices.contains(part) else { return slots[index].failed = true }
            let range = slot.ranges[part]
            if range.deallocate {
                if (try? completion.value("fallocate(PUNCH_HOLE)")) == nil { slots[index].failed = true }
            } else if (try? file.finishZero(completion, at: range.offset, length: range.length)) == nil {
                slots[index].failed = true
            }
        }
    }

    /// Writes request `index`'s status and completes it.
    func finish(_ index: Int) {
        let slot = slots[index]
        guard let request = slot.request else { return }
        var writer = request.writer()
        let status: BlockStatus = slot.failed ? .ioError : .ok
        switch slot.kind {
        case .read where status == .ok:
            if let bounce = slot.bounce {
                writer.write(UnsafeRawBufferPointer(rebasing: bounce[0..<slot.produced]))
            } else {
                writer.produce(upTo: slot.produced) { $0.count }
            }
            writer.writeZeros(slot.bytes - slot.produced)
            tally.reads += 1
            tally.bytesRead += UInt64(slot.bytes)
        case .read:
            // GHT-BLK-20: a failed read leaves zeros, never what the buffers held before.
            writer.writeZeros(slot.bytes)
        case .write:
            writesInFlight -= 1
            if status == .ok {
                tally.writes += 1
                tally.bytesWritten += UInt64(slot.bytes)
            }
        case .flush, .ranges:
            break
        }
        BlockDevice.finish(status, &writer, &tally)
        requestsInFlight -= 1
        release(index)
        request.complete(with: writer)
    }

    /// GHT-BLK-18: starts every held flush whose earlier writes have all completed.
    func releaseFlushes() {
        guard !heldFlushes.isEmpty else { return }
        var oldest = UInt64.max
        for slot in slots where slot.request != nil && slot.kind == .write { oldest = min(oldest, slot.sequence) }
        var waiting: [Int] = []
        for index in heldFlushes {
            guard slots[index].sequence <= oldest else {
                waiting.append(index)
                continue
            }
            if !prepareFlush(index) {
                slots[index].failed = (try? file.synchronize()) == nil
                finish(index)
            }
        }
        heldFlushes = waiting
    }

    /// GHT-BLK-27: waits (at most `timeoutMilliseconds`) until nothing of this queue is in the
    /// kernel, completing each request as its I/O ends, then closes the ring. `false`: I/O is
    /// still in the kernel; the ring stays open and its requests kept (their memory mapped).
    func stop(timeoutMilliseconds: Int32) -> Bool {
        let deadline = SystemClock.monotonic.nanoseconds + UInt64(max(timeoutMilliseconds, 0)) * 1_000_000
        submit()
        reap()
        while ring.inFlight > 0 || !heldFlushes.isEmpty {
            submit()
            let now = SystemClock.monotonic.nanoseconds
            guard now < deadline, (try? ring.wait(minimum: 1, timeoutMilliseconds: Int32((deadline - now) / 1_000_000) + 1)) == true else {
                return false
            }
            reap()
        }
        ring.close()
        return true
    }

    /// The counts gathered since the last call.
    func takeTally() -> BlockDevice.Statistics {
        defer { tally = BlockDevice.Statistics() }
        return tally
    }
}
