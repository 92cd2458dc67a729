import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSession(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    SessionTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
