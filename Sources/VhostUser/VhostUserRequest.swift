/// Front-end request numbers (vhost-user.rst "Front-end message types"; QEMU
/// `VhostUserRequest`), plus this transport's grant-table requests (Spec/vhost-user.md §4).
public enum VhostUserRequest: UInt32, CaseIterable, Hashable, Sendable {
    case getFeatures = 1
    case setFeatures = 2
    case setOwner = 3
    case resetOwner = 4
    case setMemoryTable = 5
    case setLogBase = 6
    case setLogFD = 7
    case setVringNum = 8
    case setVringAddress = 9
    case setVringBase = 10
    case getVringBase = 11
    case setVringKick = 12
    case setVringCall = 13
    case setVringErr = 14
    case getProtocolFeatures = 15
    case setProtocolFeatures = 16
    case getQueueNum = 17
    case setVringEnable = 18
    case sendRARP = 19
    case netSetMTU = 20
    case setBackEndRequestFD = 21
    case iotlbMessage = 22
    case setVringEndian = 23
    case getConfig = 24
    case setConfig = 25
    case createCryptoSession = 26
    case closeCryptoSession = 27
    case postcopyAdvise = 28
    case postcopyListen = 29
    case postcopyEnd = 30
    case getInflightFD = 31
    case setInflightFD = 32
    case gpuSetSocket = 33
    case resetDevice = 34
    case vringKick = 35
    case getMaxMemorySlots = 36
    case addMemoryRegion = 37
    case removeMemoryRegion = 38
    case setStatus = 39
    case getStatus = 40
    /// SET_GRANT_TABLE: this transport's extension, private to it (Spec/vhost-user.md §4).
    case setGrantTable = 1024
    /// REVOKE_GRANTS: this transport's extension, private to it (Spec/vhost-user.md §4).
    case revokeGrants = 1025

    /// False for the requests this transport does not implement: dirty logging, RARP, MTU,
    /// crypto sessions, postcopy, the GPU socket. They still decode (to
    /// ``VhostUserMessage/unsupported(_:payload:)``) so that the session can answer them
    /// cleanly instead of treating them as garbage (GHT-VU-17).
    public var isSupported: Bool {
        switch self {
        case .setLogBase, .setLogFD, .sendRARP, .netSetMTU, .createCryptoSession, .closeCryptoSession,
             .postcopyAdvise, .postcopyListen, .postcopyEnd, .gpuSetSocket:
            return false
        default:
            return true
        }
    }

    /// True if the back-end answers this request whatever the NEED_REPLY flag says: the GET
    /// requests have a reply body, IOTLB_MSG is always acknowledged (vhost-user.rst
    /// "VHOST_USER_IOTLB_MSG"), and REVOKE_GRANTS reports completion (GHT-VUG-04). Any other
    /// request is answered with a REPLY_ACK only if NEED_REPLY is set.
    public var alwaysReplies: Bool {
        switch self {
        case .getFeatures, .getProtocolFeatures, .getVringBase, .getQueueNum, .getConfig, .getMaxMemorySlots,
             .getStatus, .iotlbMessage, .revokeGrants, .getInflightFD:
            return true
        case .setLogBase, .createCryptoSession, .postcopyAdvise, .postcopyEnd:
            // Unsupported, but vhost-user.rst gives them a reply; the session answers or closes.
            return true
        default:
            return false
        }
    }

    /// The file descriptors an unsupported request may carry (vhost-user.rst "Communication":
    /// SET_LOG_BASE carries one with LOG_SHMFD, SET_LOG_FD and GPU_SET_SOCKET one
    /// each, the rest none). Supported requests are checked per payload.
    package var unsupportedFileDescriptors: ClosedRange<Int> {
        switch self {
        case .setLogBase: return 0...1
        case .setLogFD, .gpuSetSocket: return 1...1
        default: return 0...0
        }
    }
}

/// Back-end channel request numbers (vhost-user.rst "Back-end message types"; QEMU
/// `VhostUserBackEndRequest`), sent by the back-end on the socket it got with
/// SET_BACKEND_REQ_FD. Numbers above 3 (in-band notifications, shared objects) belong to
/// features this transport does not negotiate and decode as unknown.
public enum VhostUserBackEndRequest: UInt32, CaseIterable, Hashable, Sendable {
    /// `VHOST_USER_BACKEND_IOTLB_MSG`: an IOTLB miss or access failure.
    case iotlbMessage = 1
    /// `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`: the device configuration changed.
    case configChange = 2
    /// `VHOST_USER_BACKEND_VRING_HOST_NOTIFIER_MSG`: not implemented (HOST_NOTIFIER is never offered).
    case vringHostNotifier = 3
}
