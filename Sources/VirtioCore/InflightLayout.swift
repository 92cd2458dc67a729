/// The shared in-flight area's layout (QEMU docs/interop/vhost-user.rst, "Inflight I/O
/// tracking"; Spec/restart.md §1): one area per queue, one after the other, each sized and
/// aligned exactly as libvhost-user (`vu_inflight_queue_size`) and DPDK's vhost library size
/// them, so that QEMU can hand an area one back-end made to another.
///
/// Split queue area: a 16-byte header (u64 features, u16 version, u16 desc_num,
/// u16 last_batch_head, u16 used_idx) and `desc_num` 16-byte `DescStateSplit` entries
/// (u8 inflight, 5 bytes padding, u16 next, u64 counter).
///
/// Packed queue area: a 32-byte header (u64 features, u16 version, desc_num, free_head,
/// old_free_head, used_idx, old_used_idx, u8 used_wrap_counter, old_used_wrap_counter, 7 bytes
/// padding, then 3 more bytes to the entries' 8-byte alignment) and `desc_num` 32-byte
/// `DescStatePacked` entries (u8 inflight, u8 padding, u16 next, last, num, u64 counter,
/// u16 id, u16 flags, u32 len, u64 addr).
public enum InflightLayout {
    /// Each queue's area starts on a 64-byte boundary (`INFLIGHT_ALIGNMENT`).
    public static let alignment = 64
    /// The version a back-end writes into a fresh area (`INFLIGHT_VERSION`).
    public static let version: UInt16 = 1
    /// Bytes of a split area's header and of one `DescStateSplit`.
    public static let splitHeaderSize = 16, splitEntrySize = 16
    /// Bytes of a packed area's header (with the padding before the entries) and of one `DescStatePacked`.
    public static let packedHeaderSize = 32, packedEntrySize = 32

    /// Bytes of one queue's area for queues of `queueSize` entries (a power of 2, at most 32768):
    /// split, `16 × size + 2` rounded up to 64 (libvhost-user's formula, which always holds the
    /// 16-byte header); packed, `32 × size + 32` rounded up to 64.
    public static func queueAreaSize(queueSize: Int, packed: Bool) -> Int {
        let raw = packed ? packedEntrySize * queueSize + packedHeaderSize : splitEntrySize * queueSize + 2
        return (raw + alignment - 1) / alignment * alignment
    }

    /// Bytes of the whole area for `queueCount` queues of `queueSize` entries.
    public static func regionSize(queueCount: Int, queueSize: Int, packed: Bool) -> Int {
        queueCount * queueAreaSize(queueSize: queueSize, packed: packed)
    }
}
