// The C shim: only what Glibc does not import into Swift (GNU-only calls, variadic syscall(),
// CMSG macros, eventfd/epoll headers). _GNU_SOURCE is defined in shim.c only: defining it in a
// header Swift imports breaks the Glibc module (see SWIFT.md A2).
#ifndef CVIRTIO_SHIM_H
#define CVIRTIO_SHIM_H

#include <stddef.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>

// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING). Both flags are GNU-only, so callers
// cannot spell them; every memfd this project creates wants exactly these two.
int CVirtioShim_memfd_create_sealable(const char *name);

// fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): the size is fixed and no
// further seal can be added or removed. Writes stay allowed (the memory is a shared ring).
int CVirtioShim_seal_size(int fd);

// fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW): the size is fixed, and more seals may
// still be added (F_SEAL_FUTURE_WRITE once the creator has mapped the file writable).
int CVirtioShim_seal_size_only(int fd);

// fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): the
// mappings that exist keep their access, but no new shared writable mapping (mmap PROT_WRITE
// with MAP_SHARED) and no write() or fallocate() can change the file any more: whoever receives
// the descriptor can only read it. Linux 5.1 or later.
int CVirtioShim_seal_future_write(int fd);

// fcntl(fd, F_GET_SEALS), decoded into the CVIRTIOSHIM_SEAL_* bits below; -1 with errno set
// (EINVAL for a file that does not support sealing).
int CVirtioShim_get_seals(int fd);

// Our own numbering, so that Swift never needs the GNU-only F_SEAL_* constants.
#define CVIRTIOSHIM_SEAL_SEAL   0x1
#define CVIRTIOSHIM_SEAL_SHRINK 0x2
#define CVIRTIOSHIM_SEAL_GROW   0x4
#define CVIRTIOSHIM_SEAL_WRITE  0x8
#define CVIRTIOSHIM_SEAL_FUTURE_WRITE 0x10

// The truncation guard (truncation_guard.c, GHT-LIFE-03): a SIGBUS on a registered mapping maps a
// private zero page over the faulting page and marks the mapping poisoned; any other SIGBUS goes
// to the handler installed before ours. Register returns a slot (-1: table full or handler not
// installable); unregister before munmap.
int CVirtioShim_guard_install(void);
int CVirtioShim_guard_register(void *base, size_t size);
void CVirtioShim_guard_unregister(int slot);
int CVirtioShim_guard_is_poisoned(int slot);
// Bumped each time a page is poisoned: one load tells a worker whether to look further.
uint64_t CVirtioShim_guard_epoch(void);
uint64_t CVirtioShim_guard_poisoned_pages(void);

// memfd_create(name, MFD_CLOEXEC) without sealing: what an unsealed peer (DPDK virtio-user, UML)
// sends, for tests of a peer that truncates its memory.
int CVirtioShim_memfd_create_unsealed(const char *name);

// accept4(fd, NULL, NULL, SOCK_CLOEXEC): GNU-only; plain accept + fcntl would leave a window in
// which a concurrent posix_spawn inherits the descriptor.
int CVirtioShim_accept_cloexec(int fd);

// pipe2(fds, O_CLOEXEC): GNU-only; pipe + fcntl would leave the same window as accept.
int CVirtioShim_pipe_cloexec(int fds[2]);

// getrandom(buffer, length, 0) through the variadic syscall() (glibc's <sys/random.h> is not
// imported into Swift): bytes from the kernel's CSPRNG, blocking only until it is first seeded.
// Returns the bytes filled (possibly fewer than asked, e.g. on a signal), or -1 with errno.
long CVirtioShim_getrandom(void *buffer, size_t length);

// sched_setaffinity / sched_getaffinity of the calling thread (pid 0) with a CPU mask of
// `bytes` bytes (bit n of byte n/8: CPU n); glibc declares them only under _GNU_SOURCE, which
// the Swift importer does not define. 0 on success, -1 with errno.
int CVirtioShim_set_thread_affinity(const void *mask, size_t bytes);
int CVirtioShim_get_thread_affinity(void *mask, size_t bytes);

// pidfd_open(pid, 0) through the variadic syscall(); -1 with errno ENOSYS on old kernels.
int CVirtioShim_pidfd_open(pid_t pid);

// posix_spawn_file_actions_addclosefrom_np(actions, from): GNU-only (glibc 2.34). Returns an
// error number like the other posix_spawn calls (ENOSYS on an older glibc).
int CVirtioShim_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int from);

// fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length): deallocates the
// range, which then reads as zeros, keeping the file size (a block device's DISCARD).
int CVirtioShim_punch_hole(int fd, int64_t offset, int64_t length);

// fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length): the range reads as
// zeros afterwards (a block device's WRITE_ZEROES). -1 with EOPNOTSUPP where the file system
// cannot; the caller then writes zeros.
int CVirtioShim_zero_range(int fd, int64_t offset, int64_t length);

// O_DIRECT: GNU-only in glibc's <fcntl.h>.
int CVirtioShim_O_DIRECT(void);

// The CMSG_* macros, which Swift cannot import.
static inline struct cmsghdr *CVirtioShim_CMSG_FIRSTHDR(const struct msghdr *msg) {
    return CMSG_FIRSTHDR(msg);
}

static inline struct cmsghdr *CVirtioShim_CMSG_NXTHDR(struct msghdr *msg, struct cmsghdr *cmsg) {
    return CMSG_NXTHDR(msg, cmsg);
}

static inline unsigned char *CVirtioShim_CMSG_DATA(struct cmsghdr *cmsg) {
    return CMSG_DATA(cmsg);
}

static inline size_t CVirtioShim_CMSG_SPACE(size_t payload) {
    return CMSG_SPACE(payload);
}

static inline size_t CVirtioShim_CMSG_LEN(size_t payload) {
    return CMSG_LEN(payload);
}

// Signal forwarding (signal_forward.c, the self-pipe trick, GHT-EMB-04): a handler for `signo`
// that writes the signal number as one byte to `fd` (the write end of a non-blocking pipe) and
// does nothing else, which is async-signal-safe whatever thread the signal lands on. The first
// install of a signal saves its previous action; restore puts that back. Both return 0, or -1
// with errno (EINVAL for a signal that cannot be caught).
int CVirtioShim_signal_forward(int signo, int fd);
int CVirtioShim_signal_restore(int signo);

// io_uring through the raw system calls (io_uring.c; io_uring_setup(2), io_uring_enter(2),
// io_uring_register(2)). The ring's mappings and the pointers into them, filled by setup; the
// Swift side (VirtioSystem's IOUring) owns it and calls unmap and close exactly once.
struct CVirtioShim_uring {
    int fd;
    unsigned features;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned sq_mask;
    unsigned cq_mask;
    // Entries prepared up to here; published to the kernel by CVirtioShim_uring_publish.
    unsigned sq_local_tail;
    unsigned *sq_head;
    unsigned *sq_tail;
    unsigned *sq_array;
    unsigned *cq_head;
    unsigned *cq_tail;
    unsigned *cq_overflow;
    void *sqes;
    void *cqes;
    void *sq_ring;
    void *cq_ring;
    size_t sq_ring_size;
    size_t cq_ring_size;
    size_t sqes_size;
};

// Our own numbering of the operations the System layer prepares (the kernel's IORING_OP_* and
// FALLOC_FL_* stay inside io_uring.c).
enum CVirtioShim_uring_operation {
    CVIRTIOSHIM_URING_NOP = 0,
    CVIRTIOSHIM_URING_READV = 1,
    CVIRTIOSHIM_URING_WRITEV = 2,
    CVIRTIOSHIM_URING_FDATASYNC = 3,
    // fallocate(PUNCH_HOLE | KEEP_SIZE), (ZERO_RANGE | KEEP_SIZE), (KEEP_SIZE).
    CVIRTIOSHIM_URING_PUNCH_HOLE = 4,
    CVIRTIOSHIM_URING_ZERO_RANGE = 5,
    CVIRTIOSHIM_URING_ALLOCATE = 6,
};

// IOSQE_IO_DRAIN, for sqe_flags.
#define CVIRTIOSHIM_URING_DRAIN 0x2

// One submission: `iovecs` (readv/writev) must stay valid until the entry was submitted
// (IORING_FEAT_SUBMIT_STABLE), the buffers they name until its completion was reaped.
struct CVirtioShim_uring_request {
    uint64_t user_data;
    uint64_t offset;
    uint64_t length;
    const void *iovecs;
    uint32_t iovec_count;
    int32_t fd;
    uint8_t operation;
    uint8_t sqe_flags;
};

// One completion (struct io_uring_cqe): `result` is the operation's return, or -errno.
struct CVirtioShim_uring_completion {
    uint64_t user_data;
    int32_t result;
    uint32_t flags;
};

// io_uring_setup(entries, {flags: CLAMP}) and the mmaps of the SQ ring, the CQ ring (one
// mapping with IORING_FEAT_SINGLE_MMAP) and the SQE array. 0, or -1 with errno (ENOSYS where
// the kernel lacks io_uring, EPERM where io_uring_disabled forbids it); nothing is left open
// on failure.
int CVirtioShim_uring_setup(unsigned entries, struct CVirtioShim_uring *ring);
// munmap of the three mappings (the caller closes ring->fd).
void CVirtioShim_uring_unmap(struct CVirtioShim_uring *ring);
// io_uring_enter(fd, to_submit, min_complete, flags, NULL, 0): the count submitted, or -1/errno.
int CVirtioShim_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags);
// io_uring_enter with GETEVENTS and EXT_ARG: waits for min_complete completions at most
// timeout_ns; -1 with ETIME when the time passed first.
int CVirtioShim_uring_wait(int fd, unsigned min_complete, int64_t timeout_ns);
// io_uring_register(fd, IORING_REGISTER_EVENTFD, &eventfd, 1): the kernel signals `eventfd`
// each time it posts completions.
int CVirtioShim_uring_register_eventfd(int fd, int eventfd);
// Writes the next SQE (not yet visible to the kernel); -1 when the SQ is full.
int CVirtioShim_uring_prepare(struct CVirtioShim_uring *ring, const struct CVirtioShim_uring_request *request);
// Store-release of the SQ tail over every prepared SQE; returns the entries the kernel has not
// consumed yet (what io_uring_enter should submit).
unsigned CVirtioShim_uring_publish(struct CVirtioShim_uring *ring);
// Copies up to `max` completions out of the CQ ring (load-acquire of the tail, store-release
// of the head): no system call. Returns how many.
unsigned CVirtioShim_uring_reap(struct CVirtioShim_uring *ring, struct CVirtioShim_uring_completion *out, unsigned max);
// Completions posted and not reaped yet.
unsigned CVirtioShim_uring_ready(const struct CVirtioShim_uring *ring);

#endif
