import VirtioCore
import VirtioTransport
import VirtioSystem

extension BlockDevice {
    /// Carries out a checked request at once, on the calling thread: the path where io_uring
    /// is off or refused (GHT-BLK-13), and a request the ring cannot carry.
    func perform(_ operation: BlockOperation, _ reader: inout FragmentReader, _ writer: inout FragmentWriter,
                 _ tally: inout Statistics) -> BlockStatus {
        switch operation {
        case .done(let status):
            return status
        case .read(let offset, let count):
            do {
                try file.read(at: offset, count: count, into: &writer)
            } catch {
                return .ioError
            }
            tally.reads += 1
            tally.bytesRead += UInt64(count)
            return .ok
        case .write(let offset, let count):
            do {
                try file.write(at: offset, count: count, from: &reader)
            } catch {
                return .ioError
            }
            tally.writes += 1
            tally.bytesWritten += UInt64(count)
            return .ok
        case .flush:
            return (try? file.synchronize()) == nil ? .ioError : .ok
        case .ranges(let ranges):
            do {
                for r in ranges {
                    if r.deallocate {
                        try file.deallocate(at: r.offset, length: r.length)
                    } else {
                        try file.zero(at: r.offset, length: r.length)
                    }
                }
            } catch {
                return .ioError
            }
            return .ok
        }
    }
}
