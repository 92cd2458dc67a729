import VirtioCore
import VirtioSystem
import VhostUser

/// The in-flight area a session tracks its queues' requests in (Spec/restart.md §1): made by
/// GET_INFLIGHT_FD or handed over by SET_INFLIGHT_FD, kept across queue stops and starts.
struct InflightArea {
    let memory: SharedMemory
    let queueCount: Int
    let queueSize: Int
    let packed: Bool

    /// Queue `i`'s area, or nil when the area has none for it.
    func queueArea(_ i: Int) -> HostRange? {
        guard i < queueCount else { return nil }
        let size = InflightLayout.queueAreaSize(queueSize: queueSize, packed: packed)
        return memory.range.slice(offset: i * size, length: size)
    }
}

extension BackEndSession {
    /// Whether the negotiated features make the device's rings packed (the area's layout follows).
    var ringsArePacked: Bool { ackedFeatures?.contains(.ringPacked) ?? false }

    /// GET_INFLIGHT_FD (GHT-INF-02): a zeroed, size-sealed memfd for `asked.queueCount` queues of
    /// `asked.queueSize`, laid out for the negotiated ring format; the session tracks its
    /// queues in it until the front-end hands another (SET_INFLIGHT_FD).
    func getInflightFD(_ asked: VhostUserInflight) throws {
        guard protocolFeatures.contains(.inflightSharedMemory) else { throw Violation("GET_INFLIGHT_FD without INFLIGHT_SHMFD") }
        let count = Int(asked.queueCount), size = Int(asked.queueSize)
        guard count <= device.queueCount else {
            throw Violation("GET_INFLIGHT_FD for \(count) queues; the device has \(device.queueCount) (GHT-INF-02)")
        }
        let packed = ringsArePacked
        let bytes = InflightLayout.regionSize(queueCount: count, queueSize: size, packed: packed)
        let memory: SharedMemory
        do {
            memory = try SharedMemory.create(name: "virtio-grant-inflight", size: bytes)
        } catch {
            throw Violation("GET_INFLIGHT_FD: no area of \(bytes) bytes: \(error)")
        }
        inflight = InflightArea(memory: memory, queueCount: count, queueSize: size, packed: packed)
        let reply = VhostUserInflight(mmapSize: UInt64(bytes), mmapOffset: 0, queueCount: asked.queueCount, queueSize: asked.queueSize)
        try send(.inflight(reply), fds: [memory.fd.rawValue])
        log(.info, .control, "in-flight area made: \(count) queue(s) of \(size), \(packed ? "packed" : "split"), \(bytes) bytes")
    }

    /// SET_INFLIGHT_FD (GHT-INF-03): maps the front-end's area. Its size must hold every queue's
    /// area in the negotiated format, its window must lie in the file (checked against the
    /// file's size) and it is watched for truncation like the memory regions (GHT-LIFE-03).
    func setInflightFD(_ info: VhostUserInflight, fd: FileDescriptor) throws {
        guard protocolFeatures.contains(.inflightSharedMemory) else { throw Violation("SET_INFLIGHT_FD without INFLIGHT_SHMFD") }
        guard !anyQueueStarted else { throw Violation("SET_INFLIGHT_FD while queues run") }
        let count = Int(info.queueCount), size = Int(info.queueSize)
        guard count <= device.queueCount else {
            throw Violation("SET_INFLIGHT_FD for \(count) queues; the device has \(device.queueCount) (GHT-INF-03)")
        }
        let packed = ringsArePacked
        let needed = InflightLayout.regionSize(queueCount: count, queueSize: size, packed: packed)
        guard info.mmapSize >= UInt64(needed) else {
            throw Violation("SET_INFLIGHT_FD: \(info.mmapSize) bytes cannot hold \(count) \(packed ? "packed" : "split") queue(s) of \(size) (\(needed)) (GHT-INF-03)")
        }
        let memory: SharedMemory
        do {
            memory = try SharedMemory.map(fd: fd, size: needed, offset: Int(info.mmapOffset))
        } catch {
            throw Violation("SET_INFLIGHT_FD: the area cannot be mapped: \(error) (GHT-INF-03)")
        }
        inflight = InflightArea(memory: memory, queueCount: count, queueSize: size, packed: packed)
        refreshPeerMemory()
        log(.info, .control, "in-flight area set: \(count) queue(s) of \(size), \(packed ? "packed" : "split")")
    }
}

extension BackEndSession {
    /// Queue `i` keeps its part of the in-flight area, after resubmitting what it records
    /// (GHT-INF-05…08 split, GHT-INF-09…16 packed), in every translation mode (the area is host memory, not guest memory).
    /// An area that cannot be believed breaks the queue (its worker reports it at the first pop);
    /// a queue the area has no part for is not tracked.
    func trackInflight<Queue: InflightTracking & ~Copyable>(_ i: Int, _ queue: inout Queue) {
        guard let inflight else { return }
        guard let range = inflight.queueArea(i), inflight.packed == Queue.tracksPackedLayout else {
            log(.warning, .control, "queue \(i) not tracked: the in-flight area has \(inflight.queueCount) \(inflight.packed ? "packed" : "split") queue(s)")
            return
        }
        do {
            try queue.trackInflight(in: range)
            if queue.pendingResubmissions > 0 {
                log(.info, .queueStarted, "queue \(i) resubmits \(queue.pendingResubmissions) request(s) in flight before the restart")
            }
        } catch {
            log(.error, .queueStarted, "queue \(i): the in-flight area cannot be used: \(error)")
        }
    }
}
