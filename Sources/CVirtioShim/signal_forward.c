// Signal forwarding for serving until a signal (Sources/VirtioTransport/System/SignalForwarder.swift).
#define _GNU_SOURCE
#include "CVirtioShim.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

// Per signal: the descriptor to write to, plus one (0: none), read by the handler; the action
// to restore, and whether there is one.
static volatile sig_atomic_t forward_fd_plus_one[NSIG];
static struct sigaction saved_action[NSIG];
static int saved[NSIG];

static void forward(int signo) {
    int saved_errno = errno;
    int fd = (int)forward_fd_plus_one[signo] - 1;
    if (fd >= 0) {
        unsigned char byte = (unsigned char)signo;
        ssize_t written = write(fd, &byte, 1);   // a full pipe drops it: one is enough to wake
        (void)written;
    }
    errno = saved_errno;
}

int CVirtioShim_signal_forward(int signo, int fd) {
    if (signo <= 0 || signo >= NSIG || fd < 0) {
        errno = EINVAL;
        return -1;
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;   // other threads' calls go on rather than fail with EINTR
    struct sigaction old;
    forward_fd_plus_one[signo] = fd + 1;
    if (sigaction(signo, &action, &old) != 0) {
        forward_fd_plus_one[signo] = 0;
        return -1;
    }
    if (!saved[signo]) {
        saved_action[signo] = old;
        saved[signo] = 1;
    }
    return 0;
}

int CVirtioShim_signal_restore(int signo) {
    if (signo <= 0 || signo >= NSIG) {
        errno = EINVAL;
        return -1;
    }
    if (!saved[signo]) {
        return 0;
    }
    // The old action first: a signal arriving in between still finds a descriptor to write to.
    int result = sigaction(signo, &saved_action[signo], NULL);
    if (result == 0) {
        saved[signo] = 0;
        forward_fd_plus_one[signo] = 0;
    }
    return result;
}
