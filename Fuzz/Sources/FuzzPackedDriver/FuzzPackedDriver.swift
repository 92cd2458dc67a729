import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPackedDriver(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    PackedDriverTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
