// io_uring through the raw system calls (no liburing): setup and the three mappings, submission
// queue entries prepared in place, completions reaped from the shared completion ring. The ABI
// is the kernel's (include/uapi/linux/io_uring.h, Documentation in io_uring_setup(2) and
// io_uring_enter(2)): the kernel reads the SQ tail and writes the SQ head; we write the CQ head
// and the kernel writes the CQ tail. Our side publishes the SQ tail with a store-release (the
// entries before it are then visible to the kernel) and reads the CQ tail with a load-acquire
// (the entries before it are then visible to us), as liburing's io_uring_smp_* helpers do.
#define _GNU_SOURCE
#include "CVirtioShim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(sizeof(struct io_uring_sqe) == 64, "the 64-byte SQE of the kernel ABI");
_Static_assert(sizeof(struct io_uring_cqe) == 16, "the 16-byte CQE of the kernel ABI");

#define URING_LOAD_ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define URING_STORE_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

void CVirtioShim_uring_unmap(struct CVirtioShim_uring *ring) {
    if (ring->sqes != NULL && ring->sqes != MAP_FAILED) munmap(ring->sqes, ring->sqes_size);
    if (ring->cq_ring != NULL && ring->cq_ring != MAP_FAILED && ring->cq_ring != ring->sq_ring) {
        munmap(ring->cq_ring, ring->cq_ring_size);
    }
    if (ring->sq_ring != NULL && ring->sq_ring != MAP_FAILED) munmap(ring->sq_ring, ring->sq_ring_size);
    ring->sqes = NULL;
    ring->cq_ring = NULL;
    ring->sq_ring = NULL;
}

int CVirtioShim_uring_setup(unsigned entries, struct CVirtioShim_uring *ring) {
    memset(ring, 0, sizeof(*ring));
    ring->fd = -1;
#ifndef SYS_io_uring_setup
    (void)entries;
    errno = ENOSYS;
    return -1;
#else
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    // CLAMP: a request beyond the kernel's maximum gets the maximum, not EINVAL. The CQ is
    // twice the SQ (the default), so every submitted entry has room for its completion when
    // no more than cq_entries are in flight (the Swift side keeps to that).
    p.flags = IORING_SETUP_CLAMP;
    int fd = (int)syscall(SYS_io_uring_setup, entries, &p);
    if (fd < 0) return -1;
    ring->fd = fd;
    ring->features = p.features;
    ring->sq_entries = p.sq_entries;
    ring->cq_entries = p.cq_entries;

    ring->sq_ring_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    ring->cq_ring_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) {
        if (ring->cq_ring_size > ring->sq_ring_size) ring->sq_ring_size = ring->cq_ring_size;
        ring->cq_ring_size = ring->sq_ring_size;
    }
    ring->sq_ring = mmap(NULL, ring->sq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (ring->sq_ring == MAP_FAILED) goto fail;
    if (single) {
        ring->cq_ring = ring->sq_ring;
    } else {
        ring->cq_ring = mmap(NULL, ring->cq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
        if (ring->cq_ring == MAP_FAILED) goto fail;
    }
    ring->sqes_size = p.sq_entries * sizeof(struct io_uring_sqe);
    ring->sqes = mmap(NULL, ring->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (ring->sqes == MAP_FAILED) goto fail;

    char *sq = ring->sq_ring, *cq = ring->cq_ring;
    ring->sq_head = (unsigned *)(sq + p.sq_off.head);
    ring->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    ring->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    ring->sq_array = (unsigned *)(sq + p.sq_off.array);
    ring->cq_head = (unsigned *)(cq + p.cq_off.head);
    ring->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    ring->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    ring->cq_overflow = (unsigned *)(cq + p.cq_off.overflow);
    ring->cqes = cq + p.cq_off.cqes;
    // The indirection array maps ring slot i to SQE i for good: entries are prepared in the
    // slot the tail names, so the array never changes again.
    for (unsigned i = 0; i < p.sq_entries; i++) ring->sq_array[i] = i;
    ring->sq_local_tail = *ring->sq_tail;
    return 0;

fail: {
        int saved = errno;
        CVirtioShim_uring_unmap(ring);
        close(fd);
        ring->fd = -1;
        errno = saved;
        return -1;
    }
#endif
}

int CVirtioShim_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
#ifdef SYS_io_uring_enter
    return (int)syscall(SYS_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
#else
    (void)fd; (void)to_submit; (void)min_complete; (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

int CVirtioShim_uring_wait(int fd, unsigned min_complete, int64_t timeout_ns) {
#ifdef SYS_io_uring_enter
    struct __kernel_timespec ts = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.ts = (uint64_t)(uintptr_t)&ts;
    return (int)syscall(SYS_io_uring_enter, fd, 0, min_complete, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof(arg));
#else
    (void)fd; (void)min_complete; (void)timeout_ns;
    errno = ENOSYS;
    return -1;
#endif
}

int CVirtioShim_uring_register_eventfd(int fd, int eventfd) {
#ifdef SYS_io_uring_register
    return (int)syscall(SYS_io_uring_register, fd, IORING_REGISTER_EVENTFD, &eventfd, 1);
#else
    (void)fd; (void)eventfd;
    errno = ENOSYS;
    return -1;
#endif
}

int CVirtioShim_uring_prepare(struct CVirtioShim_uring *ring, const struct CVirtioShim_uring_request *request) {
    unsigned head = URING_LOAD_ACQUIRE(ring->sq_head);
    unsigned tail = ring->sq_local_tail;
    if (tail - head >= ring->sq_entries) return -1;
    struct io_uring_sqe *sqe = (struct io_uring_sqe *)ring->sqes + (tail & ring->sq_mask);
    memset(sqe, 0, sizeof(*sqe));
    sqe->fd = request->fd;
    sqe->flags = request->sqe_flags;
    sqe->user_data = request->user_data;
    switch (request->operation) {
    case CVIRTIOSHIM_URING_READV:
    case CVIRTIOSHIM_URING_WRITEV:
        sqe->opcode = request->operation == CVIRTIOSHIM_URING_READV ? IORING_OP_READV : IORING_OP_WRITEV;
        sqe->addr = (uint64_t)(uintptr_t)request->iovecs;
        sqe->len = request->iovec_count;
        sqe->off = request->offset;
        break;
    case CVIRTIOSHIM_URING_FDATASYNC:
        sqe->opcode = IORING_OP_FSYNC;
        sqe->fsync_flags = IORING_FSYNC_DATASYNC;
        break;
    case CVIRTIOSHIM_URING_PUNCH_HOLE:
    case CVIRTIOSHIM_URING_ZERO_RANGE:
    case CVIRTIOSHIM_URING_ALLOCATE:
        // IORING_OP_FALLOCATE takes the length in addr and the mode in len (io_fallocate_prep).
        sqe->opcode = IORING_OP_FALLOCATE;
        sqe->off = request->offset;
        sqe->addr = request->length;
        sqe->len = request->operation == CVIRTIOSHIM_URING_PUNCH_HOLE ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
                 : request->operation == CVIRTIOSHIM_URING_ZERO_RANGE ? (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)
                 : FALLOC_FL_KEEP_SIZE;
        break;
    case CVIRTIOSHIM_URING_NOP:
    default:
        sqe->opcode = IORING_OP_NOP;
        break;
    }
    ring->sq_local_tail = tail + 1;
    return 0;
}

unsigned CVirtioShim_uring_publish(struct CVirtioShim_uring *ring) {
    // Store-release: every SQE written before this store is visible to the kernel once it
    // sees the new tail.
    URING_STORE_RELEASE(ring->sq_tail, ring->sq_local_tail);
    return ring->sq_local_tail - URING_LOAD_ACQUIRE(ring->sq_head);
}

unsigned CVirtioShim_uring_reap(struct CVirtioShim_uring *ring, struct CVirtioShim_uring_completion *out, unsigned max) {
    unsigned head = *ring->cq_head;
    // Load-acquire: the CQEs below the tail the kernel published are visible from here on.
    unsigned tail = URING_LOAD_ACQUIRE(ring->cq_tail);
    unsigned n = 0;
    const struct io_uring_cqe *cqes = ring->cqes;
    while (head != tail && n < max) {
        const struct io_uring_cqe *cqe = &cqes[head & ring->cq_mask];
        out[n].user_data = cqe->user_data;
        out[n].result = cqe->res;
        out[n].flags = cqe->flags;
        n++;
        head++;
    }
    // Store-release: the slots are read before the kernel may reuse them.
    if (n > 0) URING_STORE_RELEASE(ring->cq_head, head);
    return n;
}

unsigned CVirtioShim_uring_ready(const struct CVirtioShim_uring *ring) {
    return URING_LOAD_ACQUIRE(ring->cq_tail) - *ring->cq_head;
}
