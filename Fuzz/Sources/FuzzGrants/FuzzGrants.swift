import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGrants(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    GrantTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
