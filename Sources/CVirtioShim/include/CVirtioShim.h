// The C shim: only what Glibc does not import into Swift (GNU-only calls, variadic syscall(),
// CMSG macros, eventfd/epoll headers). _GNU_SOURCE is defined in shim.c only: defining it in a
// header Swift imports breaks the Glibc module (see SWIFT.md A2).
#ifndef CVIRTIO_SHIM_H
#define CVIRTIO_SHIM_H

#include <stdint.h>

#endif
