/// Allocates runs of 4 KiB pages of a front-end's shared memory pool (frames in grant terms).
struct PageAllocator {
    private var used: [Bool]
    private var cursor = 0

    init(pages: Int) { used = [Bool](repeating: false, count: pages) }

    /// The number of free pages.
    var freeCount: Int { used.lazy.filter { !$0 }.count }

    /// `count` consecutive free pages, first fit from where the last search ended.
    mutating func allocate(_ count: Int) -> Int? {
        guard count > 0, count <= used.count else { return nil }
        for pass in 0..<2 {
            var start = pass == 0 ? cursor : 0
            let end = pass == 0 ? used.count : min(cursor + count, used.count)
            while start + count <= end {
                if let taken = (start..<(start + count)).last(where: { used[$0] }) {
                    start = taken + 1
                } else {
                    for p in start..<(start + count) { used[p] = true }
                    cursor = start + count
                    return start
                }
            }
        }
        return nil
    }

    mutating func free(_ first: Int, _ count: Int) {
        for p in first..<(first + count) {
            precondition(used[p], "page freed twice")
            used[p] = false
        }
    }
}
