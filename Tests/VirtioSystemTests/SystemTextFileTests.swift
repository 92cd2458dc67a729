#if canImport(Glibc)
import Glibc
#endif
import Testing
import VirtioSystem

@Suite("Text files", .tags(.system))
struct SystemTextFileTests {
    @Test("GHT-OS-01: TextFile round-trips text, lists files sorted without following links, and reports failures as SystemError")
    func roundTripListAndErrors() throws {
        var template = Array("/tmp/vg-textfile-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let root = String(cString: try #require(made))
        defer {
            for name in ["sub/b.md", "a.md", "c.txt", "loop"] { unlink(root + "/" + name) }
            rmdir(root + "/sub")
            rmdir(root)
        }
        mkdir(root + "/sub", 0o755)
        let text = "| ID | Level | Rule |\nÄ – ü\n" + String(repeating: "x", count: 100_000)
        try TextFile.write(text, to: root + "/sub/b.md")
        try TextFile.write("a", to: root + "/a.md")
        try TextFile.write("c", to: root + "/c.txt")
        symlink(root, root + "/loop")   // a link back up the tree
        #expect(try TextFile.read(root + "/sub/b.md") == text)
        #expect(try TextFile.files(under: root, suffix: ".md") == [root + "/a.md", root + "/sub/b.md"])
        #expect(TextFile.exists(root + "/a.md") && !TextFile.exists(root + "/none"))
        #expect(throws: SystemError(errno: ENOENT, operation: "open")) { _ = try TextFile.read(root + "/none") }
        #expect(throws: SystemError(errno: ENOENT, operation: "opendir")) { _ = try TextFile.files(under: root + "/none", suffix: ".md") }
    }

    @Test("GHT-OS-24: TextFile writes and reads bytes with the mode asked for; remove deletes, a second remove is no error, a directory's is a SystemError")
    func bytesAndRemove() throws {
        var template = Array("/tmp/vg-bytes-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let root = String(cString: try #require(made))
        defer { rmdir(root) }
        let path = root + "/image"
        let bytes = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) } + [0, 0xFF]
        try TextFile.write(bytes: bytes, to: path, mode: 0o600)
        #expect(try TextFile.bytes(path) == bytes)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        try TextFile.remove(path)
        #expect(!TextFile.exists(path))
        try TextFile.remove(path)   // already gone
        #expect(throws: SystemError(errno: EISDIR, operation: "unlink")) { try TextFile.remove(root) }
    }
}
