#if canImport(Glibc)
import Glibc
#endif

/// Standard output and standard error, written unbuffered.
///
/// A command's report lines go out with one `write` each, so that lines from several threads
/// never interleave and a parent reading the pipe sees each line when it happens (`print`
/// buffers standard output when it is a pipe).
public struct StandardStream: TextOutputStream, Sendable {
    /// The descriptor written to.
    public let fd: Int32

    /// Descriptor 1.
    public static var output: StandardStream { StandardStream(fd: 1) }
    /// Descriptor 2.
    public static var error: StandardStream { StandardStream(fd: 2) }

    /// Writes `line` and a newline with one `write` (see above: lines never interleave).
    public func writeLine(_ line: String) { write(line + "\n") }

    /// Writes all of `string`; a write that fails for another reason than `EINTR` (a closed
    /// pipe) drops the rest, as `print` would.
    public func write(_ string: String) {
        var text = string
        let fd = fd
        text.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { break }
            }
        }
    }
}
