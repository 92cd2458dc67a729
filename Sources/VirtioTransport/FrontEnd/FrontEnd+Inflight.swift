import VirtioCore
import VirtioSystem
import VhostUser

extension FrontEnd {
    /// The in-flight area's descriptor, for a front-end that hands the area to a restarted
    /// back-end (SET_INFLIGHT_FD); nil until GET_INFLIGHT_FD made one.
    var inflightFileDescriptor: FileDescriptor? { inflightArea?.memory.fd }

    /// QEMU's order (vhost-user-blk's start): once INFLIGHT_SHMFD is negotiated, GET_INFLIGHT_FD
    /// the first time queues are set up (after SET_FEATURES, so the back-end knows the ring
    /// format), then SET_INFLIGHT_FD before every setup of the queues (GHT-INF-04). The area
    /// is this side's to keep: a back-end that dies leaves its record of the requests in flight
    /// here.
    func shareInflightArea() throws(FrontEndError) {
        guard protocolFeatures.contains(.inflightSharedMemory) else { return }
        if inflightArea == nil {
            let asked = VhostUserInflight(queueCount: UInt16(configuration.queueCount), queueSize: UInt16(configuration.queueSize))
            let (reply, fds) = try exchange(.getInflightFD(asked))
            guard case .inflight(let info) = reply, let fd = fds.first else { throw .protocolViolation("GET_INFLIGHT_FD") }
            do throws(SharedMemoryError) {
                // The window is checked against the file's real size; a back-end that shrinks
                // the file later poisons the mapping rather than the process (GHT-LIFE-03).
                inflightArea = (try SharedMemory.map(fd: fd, size: Int(info.mmapSize), offset: Int(info.mmapOffset)), info)
            } catch {
                throw .sharedMemory(error)
            }
        }
        guard let (memory, info) = inflightArea else { return }
        try request(.setInflightFD(info), fds: [memory.fd.rawValue])
    }
}
