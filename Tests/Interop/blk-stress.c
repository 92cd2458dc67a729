/* The guest side of interop.py's restart and migration scenarios (Tests/Interop/restart.py):
 * concurrent O_DIRECT writers and readers on a virtio-blk disk, every byte verified, so that a
 * device keeps several requests in flight and a back-end may complete them in any order.
 * Built on the host with `gcc -static -O2 -pthread` and put in the initramfs as /bin/blk-stress.
 * Results go to stdout as `VG-RESULT key=value` lines; /tmp/stress.done marks the end.
 *
 *   blk-stress DEV WRITERS READERS AREA_BLOCKS CONTROL_BLOCK MAX_SECONDS SEED
 *
 * Blocks are 4096 bytes. Writer w owns blocks [w*AREA, (w+1)*AREA): generation g = 1, 2, ...
 * writes the whole area as chunks of 1..64 blocks (sizes from a seeded xorshift), each block
 * filled with block(b, g), then reads the area back and checks every block; after a full pass
 * it stops if the host has asked it to.  Readers read random chunks (1..8 blocks) of any area meanwhile and
 * check each block no write touched during the read (a per-block sequence count, odd while a
 * write is in flight) against the generation it holds. The host asks for the end by writing
 * "VGSTOP!!" at the start of CONTROL_BLOCK (read every 300 ms). block(b, g), 512 u64 words,
 * little-endian: w[0] = 0x4B4C424756 ("VGBLK"), w[1] = b, w[2] = g, w[3] = ~(b ^ g),
 * w[i] = b*K1 + g*K2 + i*K3 mod 2^64 for i >= 4 (restart.py computes the same bytes).
 * MAX_SECONDS bounds the run, the writers have 30 s to finish once the host asked, and 45 s
 * without a completed batch is a stall: past any of these the I/O is stuck (or the host never asked); the tool reports stalled=1 and leaves
 * without waiting for threads blocked in the kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/aio_abi.h>

#define BS 4096
#define MAX_CHUNK 32              /* writes of 4 KiB to 128 KiB: varied service times */
#define READ_CHUNK 8
#define DEPTH 16                  /* requests each thread submits at once (Linux AIO) */
#define WORDS (BS / 8)
#define K1 0x9E3779B97F4A7C15ull
#define K2 0xC2B2AE3D27D4EB4Full
#define K3 0x165667B19E3779F9ull
#define MAX_THREADS 16

static int fd;
static int writers, readers;
static uint64_t area, control_block;
static uint32_t *seqs;                  /* per data block: 2g while it holds g, 2g-1 while writing g */
static volatile int stop_requested;
static volatile uint64_t stop_seen_ns;   /* when the host's stop was read: the writers have 30 s from then */
static volatile int writers_left;
static uint64_t final_gen[MAX_THREADS];
static uint64_t passes, writes, reads, read_blocks_verified, io_errors, verify_failures, max_latency_ns;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static int reports;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill_block(uint64_t *w, uint64_t b, uint64_t g) {
    w[0] = 0x4B4C424756ull;
    w[1] = b;
    w[2] = g;
    w[3] = ~(b ^ g);
    for (uint64_t i = 4; i < WORDS; i++) w[i] = b * K1 + g * K2 + i * K3;
}

static int block_is(const uint64_t *w, uint64_t b, uint64_t g) {
    static const uint64_t zero[WORDS];
    if (g == 0) return memcmp(w, zero, BS) == 0;
    uint64_t expect[WORDS];
    fill_block(expect, b, g);
    return memcmp(w, expect, BS) == 0;
}

static void count(uint64_t *counter, uint64_t n) {
    pthread_mutex_lock(&stats_lock);
    *counter += n;
    pthread_mutex_unlock(&stats_lock);
}

/* One line per problem, the first 20 only: the console is slow under TCG. */
static void report(const char *what, uint64_t block, long value) {
    pthread_mutex_lock(&stats_lock);
    if (reports < 20) {
        printf("VG-RESULT stress_problem_%d=%s block=%llu value=%ld\n", reports, what, (unsigned long long)block, value);
        fflush(stdout);
    }
    reports++;
    pthread_mutex_unlock(&stats_lock);
}

/* Linux AIO through the system calls (the static binary has no libaio): each thread
 * submits DEPTH requests in one io_submit, so the device holds many at once and a back-end
 * that completes out of order does. */
struct batch {
    aio_context_t aio;
    struct iocb cbs[DEPTH];
    struct iocb *ptrs[DEPTH];
    struct io_event events[DEPTH];
    uint64_t first[DEPTH], blocks[DEPTH];
    int n;
};

static void batch_init(struct batch *bt) {
    memset(bt, 0, sizeof *bt);
    if (syscall(SYS_io_setup, DEPTH, &bt->aio) != 0) {
        printf("VG-RESULT stress_error=io_setup: %s\n", strerror(errno));
        fflush(stdout);
        exit(1);
    }
}

static void batch_add(struct batch *bt, int write, void *buf, uint64_t b, uint64_t n) {
    struct iocb *cb = &bt->cbs[bt->n];
    memset(cb, 0, sizeof *cb);
    cb->aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
    cb->aio_fildes = (uint32_t)fd;
    cb->aio_buf = (uint64_t)(uintptr_t)buf;
    cb->aio_nbytes = n * BS;
    cb->aio_offset = (int64_t)(b * BS);
    cb->aio_data = (uint64_t)bt->n;
    bt->ptrs[bt->n] = cb;
    bt->first[bt->n] = b;
    bt->blocks[bt->n] = n;
    bt->n++;
}

/* Submits the batch and waits for all of it; `done(i, ok)` for each request as it completes. */
static void batch_run(struct batch *bt, void (*done)(struct batch *, int, int, void *), void *arg) {
    uint64_t t0 = now_ns();
    int submitted = 0, completed = 0;
    while (submitted < bt->n) {
        long r = syscall(SYS_io_submit, bt->aio, (long)(bt->n - submitted), bt->ptrs + submitted);
        if (r <= 0) {
            for (int i = submitted; i < bt->n; i++) {
                count(&io_errors, 1);
                report("io_submit", bt->first[i], r < 0 ? -errno : 0);
                done(bt, i, 0, arg);
            }
            bt->n = submitted;
            break;
        }
        submitted += (int)r;
    }
    while (completed < submitted) {
        long r = syscall(SYS_io_getevents, bt->aio, 1L, (long)DEPTH, bt->events, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            report("io_getevents", 0, -errno);
            break;
        }
        for (long k = 0; k < r; k++) {
            int i = (int)bt->events[k].data;
            int write = bt->cbs[i].aio_lio_opcode == IOCB_CMD_PWRITE;
            int ok = bt->events[k].res == (int64_t)(bt->blocks[i] * BS);
            if (!ok) {
                count(&io_errors, 1);
                report(write ? "write" : "read", bt->first[i], (long)bt->events[k].res);
            }
            done(bt, i, ok, arg);
        }
        completed += (int)r;
    }
    uint64_t dt = now_ns() - t0;
    pthread_mutex_lock(&stats_lock);
    if (dt > max_latency_ns) max_latency_ns = dt;
    for (int i = 0; i < bt->n; i++) {
        if (bt->cbs[i].aio_lio_opcode == IOCB_CMD_PWRITE) writes++; else reads++;
    }
    pthread_mutex_unlock(&stats_lock);
    bt->n = 0;
}

static void write_done(struct batch *bt, int i, int ok, void *arg) {
    uint32_t seq = (uint32_t)(uintptr_t)arg;
    (void)ok;
    for (uint64_t k = 0; k < bt->blocks[i]; k++) __atomic_store_n(&seqs[bt->first[i] + k], seq, __ATOMIC_SEQ_CST);
}

static void readback_done(struct batch *bt, int i, int ok, void *arg) {
    uint64_t g = (uint64_t)(uintptr_t)arg;
    if (!ok) return;
    const uint64_t *buf = (const uint64_t *)(uintptr_t)bt->cbs[i].aio_buf;
    for (uint64_t k = 0; k < bt->blocks[i]; k++)
        if (!block_is(buf + k * WORDS, bt->first[i] + k, g)) {
            count(&verify_failures, 1);
            report("writer_readback_mismatch", bt->first[i] + k, (long)g);
        }
}

static void *writer(void *arg) {
    int w = (int)(intptr_t)arg;
    uint64_t rng = 0x9E3779B9ull * (uint64_t)(w + 1) + 12345;
    uint64_t *buf;
    struct batch bt;
    batch_init(&bt);
    if (posix_memalign((void **)&buf, BS, DEPTH * MAX_CHUNK * BS)) return NULL;
    uint64_t first = (uint64_t)w * area;
    for (uint64_t g = 1;; g++) {
        for (uint64_t pos = 0; pos < area;) {
            uint64_t *slot = buf + (uint64_t)bt.n * MAX_CHUNK * WORDS;
            uint64_t n = 1 + xorshift(&rng) % MAX_CHUNK;
            if (n > area - pos) n = area - pos;
            for (uint64_t k = 0; k < n; k++) {
                __atomic_store_n(&seqs[first + pos + k], (uint32_t)(2 * g - 1), __ATOMIC_SEQ_CST);
                fill_block(slot + k * WORDS, first + pos + k, g);
            }
            batch_add(&bt, 1, slot, first + pos, n);
            pos += n;
            if (bt.n == DEPTH || pos == area) batch_run(&bt, write_done, (void *)(uintptr_t)(2 * g));
        }
        for (uint64_t pos = 0; pos < area;) {
            uint64_t n = area - pos < MAX_CHUNK ? area - pos : MAX_CHUNK;
            batch_add(&bt, 0, buf + (uint64_t)bt.n * MAX_CHUNK * WORDS, first + pos, n);
            pos += n;
            if (bt.n == DEPTH || pos == area) batch_run(&bt, readback_done, (void *)(uintptr_t)g);
        }
        final_gen[w] = g;
        count(&passes, 1);
        if (stop_requested) break;
    }
    free(buf);
    __atomic_sub_fetch(&writers_left, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

struct read_state { uint32_t before[DEPTH][READ_CHUNK]; };

static void reader_done(struct batch *bt, int i, int ok, void *arg) {
    struct read_state *st = arg;
    if (!ok) return;
    const uint64_t *buf = (const uint64_t *)(uintptr_t)bt->cbs[i].aio_buf;
    uint64_t verified = 0;
    for (uint64_t k = 0; k < bt->blocks[i]; k++) {
        uint64_t b = bt->first[i] + k;
        uint32_t after = __atomic_load_n(&seqs[b], __ATOMIC_SEQ_CST);
        if (after != st->before[i][k] || (after & 1)) continue;   /* a write overlapped: either content is fine */
        verified++;
        if (!block_is(buf + k * WORDS, b, after / 2)) {
            count(&verify_failures, 1);
            report("reader_mismatch", b, (long)(after / 2));
        }
    }
    count(&read_blocks_verified, verified);
}

static void *reader(void *arg) {
    uint64_t rng = 0xDEADBEEFull + (uint64_t)(intptr_t)arg * 7919;
    uint64_t *buf;
    struct batch bt;
    static __thread struct read_state st;
    batch_init(&bt);
    if (posix_memalign((void **)&buf, BS, DEPTH * READ_CHUNK * BS)) return NULL;
    uint64_t total = area * (uint64_t)writers;
    while (__atomic_load_n(&writers_left, __ATOMIC_SEQ_CST) > 0) {
        for (int i = 0; i < DEPTH; i++) {
            uint64_t b = xorshift(&rng) % total;
            uint64_t n = 1 + xorshift(&rng) % READ_CHUNK;
            if (n > total - b) n = total - b;
            for (uint64_t k = 0; k < n; k++) st.before[i][k] = __atomic_load_n(&seqs[b + k], __ATOMIC_SEQ_CST);
            batch_add(&bt, 0, buf + (uint64_t)i * READ_CHUNK * WORDS, b, n);
        }
        batch_run(&bt, reader_done, &st);
    }
    free(buf);
    return NULL;
}

static void *control(void *arg) {
    (void)arg;
    char *buf;
    if (posix_memalign((void **)&buf, BS, BS)) return NULL;
    while (!stop_requested) {
        usleep(300000);
        if (pread(fd, buf, BS, (off_t)(control_block * BS)) == BS && memcmp(buf, "VGSTOP!!", 8) == 0) {
            printf("VG-RESULT stress_stop_seen=1\n");
            fflush(stdout);
            stop_seen_ns = now_ns();
            stop_requested = 1;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: blk-stress DEV WRITERS READERS AREA_BLOCKS CONTROL_BLOCK MAX_SECONDS SEED\n");
        return 2;
    }
    writers = atoi(argv[2]);
    readers = atoi(argv[3]);
    area = strtoull(argv[4], NULL, 10);
    control_block = strtoull(argv[5], NULL, 10);
    int max_seconds = atoi(argv[6]);
    if (writers < 1 || writers > MAX_THREADS || readers < 0 || readers > MAX_THREADS || area < 1) return 2;
    fd = open(argv[1], O_RDWR | O_DIRECT);
    if (fd < 0) {
        printf("VG-RESULT stress_error=open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    seqs = calloc(area * (uint64_t)writers, sizeof *seqs);
    writers_left = writers;
    uint64_t t0 = now_ns();
    pthread_t threads[2 * MAX_THREADS + 1];
    int n = 0;
    for (int i = 0; i < writers; i++) pthread_create(&threads[n++], NULL, writer, (void *)(intptr_t)i);
    for (int i = 0; i < readers; i++) pthread_create(&threads[n++], NULL, reader, (void *)(intptr_t)i);
    pthread_t ctl;
    pthread_create(&ctl, NULL, control, NULL);
    printf("VG-RESULT stress_started=1\n");
    fflush(stdout);
    /* Progress every 5 s; a deadline for the whole run. Threads blocked in the kernel on a
     * request that never completes cannot be joined, so the end is marked by a file. */
    int stalled = 0;
    uint64_t last_ops = 0, last_progress = t0;
    uint64_t last_report = t0, deadline = t0 + (uint64_t)max_seconds * 1000000000ull;
    while (__atomic_load_n(&writers_left, __ATOMIC_SEQ_CST) > 0) {
        usleep(100000);
        uint64_t t = now_ns();
        if (t - last_report > 5000000000ull) {
            pthread_mutex_lock(&stats_lock);
            printf("VG-PROGRESS t=%.1f passes=%llu writes=%llu reads=%llu errors=%llu\n", (t - t0) / 1e9,
                   (unsigned long long)passes, (unsigned long long)writes, (unsigned long long)reads,
                   (unsigned long long)io_errors);
            pthread_mutex_unlock(&stats_lock);
            fflush(stdout);
            last_report = t;
        }
        pthread_mutex_lock(&stats_lock);
        uint64_t ops = writes + reads;
        pthread_mutex_unlock(&stats_lock);
        if (ops != last_ops) {
            last_ops = ops;
            last_progress = t;
        }
        if (t > deadline || (stop_seen_ns && t > stop_seen_ns + 30000000000ull) || t > last_progress + 45000000000ull) {
            stalled = 1;
            break;
        }
    }
    stop_requested = 1;
    if (!stalled)
        for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
    pthread_mutex_lock(&stats_lock);
    for (int w = 0; w < writers; w++) printf("VG-RESULT stress_gen_w%d=%llu\n", w, (unsigned long long)final_gen[w]);
    printf("VG-RESULT stress_passes=%llu\nVG-RESULT stress_writes=%llu\nVG-RESULT stress_reads=%llu\n"
           "VG-RESULT stress_read_blocks_verified=%llu\nVG-RESULT stress_io_errors=%llu\n"
           "VG-RESULT stress_verify_failures=%llu\nVG-RESULT stress_problems=%d\n"
           "VG-RESULT stress_max_latency_ms=%.1f\nVG-RESULT stress_seconds=%.1f\nVG-RESULT stress_stalled=%d\n",
           (unsigned long long)passes, (unsigned long long)writes, (unsigned long long)reads,
           (unsigned long long)read_blocks_verified, (unsigned long long)io_errors,
           (unsigned long long)verify_failures, reports, max_latency_ns / 1e6, (now_ns() - t0) / 1e9, stalled);
    fflush(stdout);
    pthread_mutex_unlock(&stats_lock);
    close(open("/tmp/stress.done", O_CREAT | O_WRONLY, 0644));
    _exit(0);
}
