// The truncation guard (Spec/hostile-peers.md, GHT-LIFE-03): a peer that shrinks a file we map
// MAP_SHARED makes our next access to the lost pages raise SIGBUS, which would kill every
// session of the process. Guarded mappings are registered in a fixed table; the SIGBUS handler
// maps a private zero page over a faulting page of a guarded mapping (the access then completes
// on zeros), marks the mapping poisoned and bumps an epoch, so the transport breaks the queue
// and ends the session that owned it. A SIGBUS anywhere else goes to the previous handler.
//
// Everything the handler touches is a lock-free atomic in static storage, and it calls only
// raw system calls (mmap through syscall(), as async-signal-safe as a system call gets).
#define _GNU_SOURCE
#include "CVirtioShim.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GUARD_SLOTS 4096

struct guarded_mapping {
    _Atomic uintptr_t start;   // 0: free slot
    _Atomic uintptr_t end;     // 0 while the slot is being claimed or released
    _Atomic uint32_t poisoned;
};

static struct guarded_mapping guards[GUARD_SLOTS];
static _Atomic int high_water;           // slots [0, high_water) may be in use
static _Atomic uint64_t poison_epoch;
static _Atomic uint64_t poisoned_pages;
static struct sigaction previous_action;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_error;
static long page_size;

static void forward(int sig, siginfo_t *info, void *context) {
    if (previous_action.sa_flags & SA_SIGINFO) {
        if (previous_action.sa_sigaction != NULL) {
            previous_action.sa_sigaction(sig, info, context);
            return;
        }
    } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
        previous_action.sa_handler(sig);
        return;
    }
    // No handler before ours: restore the default and return; the faulting access runs again
    // and the process dies of SIGBUS as it would have without the guard.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGBUS, &dfl, NULL);
}

// Relaxed accesses with explicit fences, not acquire loads and release stores: under
// ThreadSanitizer an acquire or release atomic takes the thread's slot lock, and a SIGBUS raised
// inside one of its atomic operations on a guarded mapping (the dirty log's OR, say) arrives
// with that lock held, so the handler would wait for itself. Relaxed ones take no lock; the
// fences give the same ordering.
static void on_sigbus(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    int limit = atomic_load_explicit(&high_water, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    for (int i = 0; i < limit; i++) {
        uintptr_t start = atomic_load_explicit(&guards[i].start, memory_order_relaxed);
        uintptr_t end = atomic_load_explicit(&guards[i].end, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (start == 0 || address < start || address >= end) continue;
        uintptr_t page = address & ~(uintptr_t)(page_size - 1);
        long mapped = syscall(SYS_mmap, (void *)page, (size_t)page_size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (mapped == -1) break;
        atomic_store_explicit(&guards[i].poisoned, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&poisoned_pages, 1, memory_order_relaxed);
        // Whoever sees the epoch move (an acquire load) then sees the mapping poisoned.
        atomic_thread_fence(memory_order_release);
        atomic_fetch_add_explicit(&poison_epoch, 1, memory_order_relaxed);
        return;
    }
    forward(sig, info, context);
}

static void install(void) {
    page_size = sysconf(_SC_PAGESIZE);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &previous_action) != 0) install_error = 1;
}

int CVirtioShim_guard_install(void) {
    pthread_once(&install_once, install);
    return install_error ? -1 : 0;
}

int CVirtioShim_guard_register(void *base, size_t size) {
    if (CVirtioShim_guard_install() != 0 || base == NULL || size == 0) return -1;
    uintptr_t start = (uintptr_t)base;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t expected = 0;
        if (!atomic_compare_exchange_strong(&guards[i].start, &expected, start)) continue;
        atomic_store_explicit(&guards[i].poisoned, 0, memory_order_relaxed);
        atomic_store_explicit(&guards[i].end, start + size, memory_order_release);
        int seen = atomic_load(&high_water);
        while (seen < i + 1 && !atomic_compare_exchange_weak(&high_water, &seen, i + 1)) {}
        return i;
    }
    return -1;
}

void CVirtioShim_guard_unregister(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return;
    atomic_store_explicit(&guards[slot].end, 0, memory_order_release);
    atomic_store_explicit(&guards[slot].poisoned, 0, memory_order_relaxed);
    atomic_store_explicit(&guards[slot].start, 0, memory_order_release);
}

int CVirtioShim_guard_is_poisoned(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return 0;
    return (int)atomic_load_explicit(&guards[slot].poisoned, memory_order_acquire);
}

uint64_t CVirtioShim_guard_epoch(void) {
    return atomic_load_explicit(&poison_epoch, memory_order_acquire);
}

uint64_t CVirtioShim_guard_poisoned_pages(void) {
    return atomic_load_explicit(&poisoned_pages, memory_order_relaxed);
}

int CVirtioShim_memfd_create_unsealed(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}
