import VirtioCore

/// What a hostile device can do to a driver's ring, per ring format.
protocol HostileDevice {
    associatedtype Queue: DriverQueue
    /// Writes a used element or descriptor with any id, length and flags somewhere.
    mutating func scribble(_ input: inout FuzzInput)
    /// Moves what says how far the device got: the used index (split), or nothing (packed).
    mutating func jump(_ input: inout FuzzInput)
    /// Completes the outstanding chain `id` (which took `slots` descriptors) honestly.
    mutating func complete(id: UInt16, slots: Int, length: UInt32, wrote: Bool)
    /// The device side forgets everything (after the driver detached all).
    mutating func reset()
}

/// The driver-side fuzz loop for either ring format.
///
/// Operations: add chains (any number of segments, direct or indirect), publish, decide on
/// kicks, reap, toggle used-buffer notifications, detach everything — interleaved with what a
/// hostile device writes: used entries with any id, length and flags, positions moved
/// anywhere, and honest completions of real chains so that the ordinary path is covered too.
///
/// Checked inside: a reaped buffer is always one the caller posted and has not had back
/// (never a token twice, never an invented one), with a written length within its writable
/// capacity; a device error breaks the queue for good (the same error every time); a refused
/// chain takes no descriptors; detaching returns exactly the chains outstanding; the
/// free-descriptor count never exceeds the queue.
struct DriverModel<Device: HostileDevice> {
    var driver: Device.Queue
    var device: Device
    let queueSize: Int
    var outstanding: [UInt64: (id: UInt16, capacity: UInt64, slots: Int)] = [:]
    var nextToken: UInt64 = 1
    var brokenBy: DriverQueueError?

    mutating func run(_ input: inout FuzzInput) {
        var steps = 0
        while !input.isExhausted && steps < 1024 {
            steps += 1
            guard step(&input) else { return }
            fuzzCheck(driver.freeDescriptorCount <= queueSize, "more free descriptors than the queue has")
            if brokenBy == nil {
                fuzzCheck(driver.outstandingCount == outstanding.count, "outstanding: queue \(driver.outstandingCount), model \(outstanding.count)")
            }
        }
    }

    mutating func step(_ input: inout FuzzInput) -> Bool {
        switch input.byte() % 10 {
        case 0, 1:
            let readable = (0..<Int(input.byte() % 5)).map { _ in BufferSegment(address: UInt64(input.integer(UInt16.self)), length: input.integer(UInt32.self) % 70000) }
            let writable = (0..<Int(input.byte() % 5)).map { _ in BufferSegment(address: UInt64(input.integer(UInt16.self)), length: input.bool() ? input.integer(UInt32.self) : input.integer(UInt32.self) % 70000) }
            let chainLayout: ChainLayout = [.automatic, .direct, .indirect][Int(input.byte() % 3)]
            let freeBefore = driver.freeDescriptorCount
            do {
                let id = try driver.add(readable: readable.span, writable: writable.span, token: nextToken, layout: chainLayout)
                fuzzCheck(Int(id) < queueSize, "id \(id) out of range")
                fuzzCheck(!outstanding.values.contains { $0.id == id }, "id \(id) handed out twice")
                outstanding[nextToken] = (id, writable.reduce(0) { $0 + UInt64($1.length) }, freeBefore - driver.freeDescriptorCount)
                nextToken += 1
            } catch {
                fuzzCheck(driver.freeDescriptorCount == freeBefore, "a refused chain took descriptors")
                if let b = brokenBy { fuzzCheck(error == b, "a broken queue refused with \(error)") }
            }
        case 2:
            driver.publish()
            _ = driver.kickNeeded()
        case 3:
            device.scribble(&input)
        case 4:
            device.jump(&input)
        case 5:
            guard let (_, chain) = outstanding.sorted(by: { $0.key < $1.key }).dropFirst(input.index(below: outstanding.count)).first else { break }
            let length = chain.capacity == 0 ? 0 : UInt32(truncatingIfNeeded: UInt64(input.integer(UInt32.self)) % (chain.capacity + 1))
            device.complete(id: chain.id, slots: chain.slots, length: length, wrote: chain.capacity > 0)
        case 6, 7:
            do {
                while let used = try driver.reapUsed() {
                    guard let chain = outstanding.removeValue(forKey: used.token) else {
                        fuzzCheck(false, "reaped token \(used.token), which is not outstanding")
                        return false
                    }
                    fuzzCheck(UInt64(used.writtenLength) <= chain.capacity, "written length \(used.writtenLength) over capacity \(chain.capacity)")
                }
            } catch {
                if let b = brokenBy { fuzzCheck(error == b, "a broken queue threw \(error), first \(b)") }
                brokenBy = error
                fuzzCheck(driver.isBroken && driver.failure == error, "a device error did not break the queue")
            }
        case 8:
            if input.bool() { driver.disableUsedNotifications() } else { _ = driver.enableUsedNotifications() }
        default:
            let tokens = driver.detachAllOutstanding()
            fuzzCheck(Set(tokens) == Set(outstanding.keys) && tokens.count == outstanding.count, "detached \(tokens.count), outstanding \(outstanding.count)")
            outstanding.removeAll()
            device.reset()
        }
        return true
    }
}
