#if canImport(Glibc)
import Glibc
#endif
import Testing
import VirtioCore
import VirtioSystem

extension SystemTests {
    @Suite("Clocks, captured output, temporary directories")
    struct ClockTests {
        @Test("The monotonic clock never goes back and counts a sleep; the thread CPU clock counts work, not sleep")
        func clocks() {
            let wall = SystemClock.monotonic.nanoseconds, cpu = SystemClock.threadCPUTime.nanoseconds
            SystemClock.sleep(milliseconds: 30)
            let slept = SystemClock.monotonic.nanoseconds &- wall, sleptCPU = SystemClock.threadCPUTime.nanoseconds &- cpu
            #expect(slept >= 30_000_000 && slept < 5_000_000_000, "slept \(slept) ns")
            #expect(sleptCPU < 20_000_000, "a sleep used \(sleptCPU) ns of CPU")
            let busyStart = SystemClock.threadCPUTime.seconds
            var x: UInt64 = 1
            while SystemClock.threadCPUTime.seconds - busyStart < 0.01 { x = x &* 6364136223846793005 &+ 1 }
            #expect(SystemClock.threadCPUTime.nanoseconds &- cpu >= 10_000_000)
            let a = SystemClock.monotonic.seconds, b = SystemClock.monotonic.seconds
            #expect(b >= a && SystemClock.monotonic.milliseconds >= wall / 1_000_000)
        }

        @Test("ChildProcess.run returns what the child printed and how it ended")
        func runCapturesOutput() throws {
            let output = try ChildProcess.run(path: "/bin/sh", arguments: ["-c", "printf 'one\\ntwo'; exit 3"])
            #expect(output.status == .exited(3))
            #expect(output.standardOutput == "one\ntwo")
            #expect(throws: SystemError.self) { try ChildProcess.run(path: "/nonexistent/\(getpid())") }
        }

        @Test("A temporary directory is created private and removed with its files")
        func temporaryDirectory() throws {
            let directory = try TemporaryDirectory(prefix: "vg-test")
            var info = stat()
            #expect(stat(directory.path, &info) == 0 && info.st_mode & 0o777 == 0o700)
            try TextFile.write("x", to: directory.path + "/file")
            #expect(TextFile.exists(directory.path + "/file"))
            directory.remove()
            #expect(!TextFile.exists(directory.path))
        }
    }
}
