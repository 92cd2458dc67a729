import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChainIO(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    ChainIOTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
