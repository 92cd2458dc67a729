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

#endif
