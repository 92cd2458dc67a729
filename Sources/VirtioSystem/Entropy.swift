#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// Random bytes from the kernel's CSPRNG (`getrandom(2)` with no flags): what an entropy
/// device (virtio-rng, VIRTIO 1.2 §5.4) hands its driver. The call blocks only until the
/// kernel's pool is first seeded, early in boot; after that it never blocks.
public enum Entropy {
    /// Fills all of `buffer` with random bytes. `getrandom` may return fewer bytes than asked
    /// (a signal during a request above 256 bytes); the rest is asked for again.
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) throws(SystemError) {
        guard let base = buffer.baseAddress else { return }
        var filled = 0
        while filled < buffer.count {
            let offset = filled
            filled += Int(try valueOrErrno("getrandom") { CVirtioShim_getrandom(base + offset, buffer.count - offset) })
        }
    }
}
