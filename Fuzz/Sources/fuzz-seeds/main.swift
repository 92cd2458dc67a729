#if canImport(Glibc)
import Glibc
#endif
import VirtioFuzzTargets

// Writes every target's seeds to Fuzz/Corpus/<target>/seed-<n> (the directory given, or
// ./Corpus): the checked-in corpus is this program's output, and a test checks that it is.
let root = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Corpus"
for (name, _) in FuzzTargets.all {
    let directory = "\(root)/\(name)"
    mkdir(root, 0o755)
    mkdir(directory, 0o755)
    for (i, seed) in FuzzTargets.seeds(name).enumerated() {
        guard let f = fopen("\(directory)/seed-\(i)", "wb") else {
            print("fuzz-seeds: cannot write \(directory)/seed-\(i)")
            exit(1)
        }
        _ = seed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
    }
    print("\(directory): \(FuzzTargets.seeds(name).count) seeds")
}
