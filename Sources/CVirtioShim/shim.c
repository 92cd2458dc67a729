#define _GNU_SOURCE
#include "CVirtioShim.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(sizeof(int) == 4, "file descriptors travel as 4-byte ints in SCM_RIGHTS");

int CVirtioShim_memfd_create_sealable(const char *name) {
    return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

int CVirtioShim_seal_size(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

int CVirtioShim_seal_size_only(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
}

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010  /* Linux 5.1; older glibc headers lack the name */
#endif

int CVirtioShim_seal_future_write(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

int CVirtioShim_get_seals(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) {
        return -1;
    }
    int result = 0;
    if (seals & F_SEAL_SEAL) result |= CVIRTIOSHIM_SEAL_SEAL;
    if (seals & F_SEAL_SHRINK) result |= CVIRTIOSHIM_SEAL_SHRINK;
    if (seals & F_SEAL_GROW) result |= CVIRTIOSHIM_SEAL_GROW;
    if (seals & F_SEAL_WRITE) result |= CVIRTIOSHIM_SEAL_WRITE;
    if (seals & F_SEAL_FUTURE_WRITE) result |= CVIRTIOSHIM_SEAL_FUTURE_WRITE;
    return result;
}

int CVirtioShim_accept_cloexec(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
}

int CVirtioShim_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
#if __GLIBC_PREREQ(2, 34)
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
#else
    (void)actions;
    (void)from;
    return ENOSYS;
#endif
}

int CVirtioShim_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int CVirtioShim_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int CVirtioShim_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

int CVirtioShim_zero_range(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

int CVirtioShim_set_thread_affinity(const void *mask, size_t bytes) {
    return sched_setaffinity(0, bytes, (const cpu_set_t *)mask);
}

int CVirtioShim_get_thread_affinity(void *mask, size_t bytes) {
    return sched_getaffinity(0, bytes, (cpu_set_t *)mask);
}

long CVirtioShim_getrandom(void *buffer, size_t length) {
    return syscall(SYS_getrandom, buffer, length, 0);
}
