import Synchronization
import VirtioCore
import VirtioSystem
import VirtioTransport

/// One guest's view of a device shared in turns: the ``VirtioDevice`` a back-end serves a
/// front-end session when m guests share the n virtual functions of one device (DESIGN §6).
///
/// Each batch of the guest's requests runs inside a virtual function obtained from the
/// scheduler: the function's device model checks every request first (a denied one is
/// answered as the device answers an illegal request and never reaches `device`,
/// GHT-MDL-02), the allowed ones go to `device`, and the batch's end is a reusable point
/// where the turn may pass to another guest. When all the guest's queues are idle the turn
/// ends (work-conserving). A guest cut off by the scheduler has its queue broken.
public final class ScheduledDevice<Model: DeviceModel>: VirtioDevice {
    public let scheduler: DeviceScheduler<Model>
    /// The guest this session is to the scheduler.
    public let guest: DomainID
    /// What executes the guest's allowed requests.
    public let device: any VirtioDevice
    /// Queues with a batch since their last idle point (bit per queue).
    private let busyQueues = Atomic<UInt64>(0)

    /// Registers a new guest with `rules` and `weight` and serves it `device`.
    public init(scheduler: DeviceScheduler<Model>, rules: Model.Rules, weight: Int = 1, device: any VirtioDevice) throws(SchedulerError) {
        self.scheduler = scheduler
        self.device = device
        guest = try scheduler.register(rules: rules, queueCount: device.queueCount, weight: weight)
    }

    deinit { scheduler.unregister(guest) }

    public var deviceID: UInt32 { device.deviceID }
    public var deviceFeatures: VirtioFeatures { device.deviceFeatures }
    public var featureRequirements: [(VirtioFeatures, VirtioFeatures)] { device.featureRequirements }
    public var queueCount: Int { device.queueCount }
    public var maxQueueSize: Int { device.maxQueueSize }
    public func readConfig() -> [UInt8] { device.readConfig() }
    public func writeConfig(offset: Int, bytes: [UInt8]) -> Bool { device.writeConfig(offset: offset, bytes: bytes) }
    public func readyBuffers(queue: Int) -> Int? { device.readyBuffers(queue: queue) }
    public func queueStarted(_ queue: Int, doorbell: QueueDoorbell) { device.queueStarted(queue, doorbell: doorbell) }
    /// An asynchronous device's completions reach the worker as they would unscheduled; the
    /// guest's turn ends only once none of its requests is inside the device (GHT-ASY-09).
    public func completionEvent(queue: Int) -> Doorbell? { device.completionEvent(queue: queue) }
    public func serviceQueue(_ queue: Int) { device.serviceQueue(queue) }

    public func queueStopped(_ queue: Int) {
        device.queueStopped(queue)
        queueIdle(queue)
    }

    public func acceptFeatures(_ features: VirtioFeatures) -> Bool {
        guard device.acceptFeatures(features) else { return false }
        scheduler.setFeatures(features, for: guest)
        return true
    }

    public func reset() {
        device.reset()
        busyQueues.store(0, ordering: .relaxed)
        scheduler.release(guest)
    }

    public func process(queue: Int, batch: inout RequestBatch) {
        busyQueues.bitwiseOr(1 << UInt64(queue & 63), ordering: .relaxed)
        let lease: FunctionLease
        do {
            lease = try scheduler.obtain(guest)
        } catch {
            return batch.abandonQueue()
        }
        // GHT-MDL-02: the model sees every request before the device acts on any.
        var allowed: [Int] = []
        allowed.reserveCapacity(batch.count)
        var bytes = 0
        let started: Void? = try? scheduler.withFunction(lease) { model, _ in
            for i in 0..<batch.count {
                var request = ModelRequest(queue: queue, staged: batch.staging(i))
                if model.start(&request).isAllowed {
                    allowed.append(i)
                    bytes += request.readableBytes + request.writableBytes
                    // GHT-ONE-01: the device acts on the copy the model checked.
                    batch.commit(request.staged)
                }
            }
        }
        let denied = batch.count - allowed.count
        if started != nil {
            if denied == 0 {
                device.process(queue: queue, batch: &batch)
            } else {
                var next = 0
                for i in 0..<batch.count {
                    if next < allowed.count && allowed[next] == i { next += 1 } else { Model.completeDenied(i, in: &batch) }
                }
                if !allowed.isEmpty {
                    var part = batch.selecting(allowed)
                    device.process(queue: queue, batch: &part)
                    batch.merge(part, at: allowed)
                }
            }
        }
        let finished: Void? = try? scheduler.withFunction(lease) { model, registers in
            for _ in allowed { model.finish(queue: queue) }
            // GHT-QST-05: the context holds the queue's own state, not a count kept beside it.
            if let state = batch.queueState, registers.queueStates.indices.contains(queue) {
                registers.queueStates[queue] = state
            }
        }
        // GHT-SCH-08: a guest cut off meanwhile gets nothing completed: the function it used
        // was scrubbed and handed on, so nothing it did may be reported as done.
        do {
            try scheduler.finishBatch(lease, requests: allowed.count, bytes: bytes, denied: denied)
        } catch {
            return batch.abandonQueue()
        }
        if started == nil || finished == nil { batch.abandonQueue() }
    }

    public func queueIdle(_ queue: Int) {
        let bit: UInt64 = 1 << UInt64(queue & 63)
        let before = busyQueues.bitwiseAnd(~bit, ordering: .relaxed).oldValue
        if before & ~bit == 0 { scheduler.release(guest) }
    }
}
