#if canImport(Glibc)
import Glibc
#endif
import VirtioFuzzTargets

/// Writes every target's seeds to `<directory>/<target>/seed-<n>` (the directory given, or
/// ./Corpus): the checked-in corpus is this program's output, and a test checks that it is.
@main
struct FuzzSeedsCommand {
    static func main() {
        let root = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Corpus"
        mkdir(root, 0o755)
        for (name, _) in FuzzTargets.all {
            let directory = "\(root)/\(name)"
            mkdir(directory, 0o755)
            let seeds = FuzzTargets.seeds(name)
            for (i, seed) in seeds.enumerated() {
                guard let f = fopen("\(directory)/seed-\(i)", "wb") else {
                    print("fuzz-seeds: cannot write \(directory)/seed-\(i)")
                    exit(1)
                }
                _ = seed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
                fclose(f)
            }
            print("\(directory): \(seeds.count) seeds")
        }
    }
}
