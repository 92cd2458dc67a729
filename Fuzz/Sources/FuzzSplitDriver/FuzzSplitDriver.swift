import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSplitDriver(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    SplitDriverTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
