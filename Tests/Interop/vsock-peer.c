/* The guest side of interop.py's vsock scenario: AF_VSOCK stream clients and a server (busybox
 * has no vsock). Built on the host with `gcc -static -O2` and put in the initramfs as
 * /bin/vsock-peer. Results go to stdout as `VG-RESULT key=value` lines.
 *
 * One exchange, either way: the connecting side sends u32 seed, u32 length, then `length`
 * bytes of pattern(seed), and shuts down writing; the accepting side reads them (checking
 * every byte), answers u32 crc32 of what it read, u32 length, then `length` bytes of
 * pattern(seed ^ 0xA5), and closes. pattern(s)[i] = (i*7 + (i>>8) + s) & 255.
 *
 *   vsock-peer serve PORT COUNT TIMEOUT      accept COUNT connections (a process each)
 *   vsock-peer connect CID PORT COUNT LENGTH COUNT concurrent exchanges of LENGTH bytes
 *   vsock-peer midclose CID PORT LENGTH      send LENGTH bytes to a peer that closes early
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 255] ^ (crc >> 8);
    return ~crc;
}

static uint8_t pattern(uint32_t seed, uint64_t i) { return (uint8_t)(i * 7 + (i >> 8) + seed); }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads up to n bytes; returns how many before end of stream, -1 on error. */
static long read_full(int fd, void *buf, size_t n) {
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long)got;
}

/* Sends the pattern of `seed`, `length` bytes, in 64 KiB pieces; returns the crc or -1. */
static int64_t send_pattern(int fd, uint32_t seed, uint32_t length) {
    static uint8_t buf[65536];
    uint32_t crc = 0;
    for (uint64_t off = 0; off < length;) {
        size_t n = length - off < sizeof buf ? length - off : sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = pattern(seed, off + i);
        crc = crc_update(crc, buf, n);
        if (write_all(fd, buf, n) < 0) return -1;
        off += n;
    }
    return crc;
}

/* Receives `length` bytes that must be the pattern of `seed`; returns bytes received (fewer at
 * an early end of stream), sets *crc and *bad (the first wrong offset + 1, or 0). */
static long receive_pattern(int fd, uint32_t seed, uint32_t length, uint32_t *crc, uint64_t *bad) {
    static uint8_t buf[65536];
    uint64_t off = 0;
    *crc = 0;
    *bad = 0;
    while (off < length) {
        size_t want = length - off < sizeof buf ? length - off : sizeof buf;
        ssize_t r = recv(fd, buf, want, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        for (ssize_t i = 0; i < r && !*bad; i++)
            if (buf[i] != pattern(seed, off + i)) *bad = off + i + 1;
        *crc = crc_update(*crc, buf, (size_t)r);
        off += (uint64_t)r;
    }
    return (long)off;
}

static int vsock_connect(unsigned cid, unsigned port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int serve_one(int fd, int k) {
    uint32_t head[2], crc;
    uint64_t bad;
    if (read_full(fd, head, 8) != 8) { printf("VG-RESULT vsock_h2g_%d=fail header\n", k); return 1; }
    long got = receive_pattern(fd, head[0], head[1], &crc, &bad);
    if (got < (long)head[1]) { printf("VG-RESULT vsock_h2g_%d=short %ld of %u (%s)\n", k, got, head[1], got < 0 ? strerror(errno) : "end of stream"); return 2; }
    if (bad) { printf("VG-RESULT vsock_h2g_%d=fail byte %llu\n", k, (unsigned long long)bad - 1); return 1; }
    uint32_t reply[2] = {crc, head[1]};
    if (write_all(fd, reply, 8) < 0 || send_pattern(fd, head[0] ^ 0xA5, head[1]) < 0) { printf("VG-RESULT vsock_h2g_%d=fail reply %s\n", k, strerror(errno)); return 1; }
    printf("VG-RESULT vsock_h2g_%d=ok seed %u bytes %u\n", k, head[0], head[1]);
    return 0;
}

static int serve(unsigned port, int count, int timeout) {
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
        printf("VG-RESULT error=vsock listen on %u: %s\n", port, strerror(errno));
        return 1;
    }
    printf("VG-RESULT vsock_listening=1\n");
    fflush(stdout);
    alarm((unsigned)timeout);
    int ok = 0, shorts = 0, failed = 0;
    for (int k = 0; k < count; k++) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) { printf("VG-RESULT vsock_h2g_accept=%s\n", strerror(errno)); break; }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) { alarm((unsigned)timeout); int rc = serve_one(c, k); fflush(stdout); _exit(rc); }
        close(c);
    }
    int status;
    while (wait(&status) > 0) {
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 2) shorts++;
        else failed++;
    }
    printf("VG-RESULT vsock_h2g_done=ok %d short %d failed %d\n", ok, shorts, failed);
    return 0;
}

static int client_one(unsigned cid, unsigned port, int i, uint32_t length) {
    int fd = vsock_connect(cid, port);
    if (fd < 0) { printf("VG-RESULT vsock_g2h_%d=fail connect %s\n", i, strerror(errno)); return 1; }
    uint32_t head[2] = {(uint32_t)i + 1, length}, reply[2], crc;
    uint64_t bad;
    int64_t sent = write_all(fd, head, 8) < 0 ? -1 : send_pattern(fd, head[0], length);
    if (sent < 0) { printf("VG-RESULT vsock_g2h_%d=fail send %s\n", i, strerror(errno)); return 1; }
    shutdown(fd, SHUT_WR);
    if (read_full(fd, reply, 8) != 8) { printf("VG-RESULT vsock_g2h_%d=fail no reply\n", i); return 1; }
    if (reply[0] != (uint32_t)sent) { printf("VG-RESULT vsock_g2h_%d=fail crc host %08x guest %08x\n", i, reply[0], (uint32_t)sent); return 1; }
    long got = receive_pattern(fd, head[0] ^ 0xA5, reply[1], &crc, &bad);
    if (got != (long)length || reply[1] != length || bad) { printf("VG-RESULT vsock_g2h_%d=fail reply %ld bytes, bad %llu\n", i, got, (unsigned long long)bad); return 1; }
    char extra;
    if (recv(fd, &extra, 1, 0) != 0) { printf("VG-RESULT vsock_g2h_%d=fail no end of stream\n", i); return 1; }
    close(fd);
    printf("VG-RESULT vsock_g2h_%d=ok crc %08x\n", i, (uint32_t)sent);
    return 0;
}

static int connect_many(unsigned cid, unsigned port, int count, uint32_t length) {
    double start = now();
    for (int i = 0; i < count; i++) {
        fflush(stdout);
        if (fork() == 0) { alarm(120); int rc = client_one(cid, port, i, length); fflush(stdout); _exit(rc); }
    }
    int status, ok = 0, failed = 0;
    while (wait(&status) > 0) {
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++; else failed++;
    }
    double seconds = now() - start;
    printf("VG-RESULT vsock_g2h_done=ok %d failed %d\n", ok, failed);
    printf("VG-RESULT vsock_g2h_seconds=%.3f\n", seconds);
    printf("VG-RESULT vsock_g2h_mbps=%.2f\n", 2.0 * count * length / seconds / 1e6);
    return 0;
}

static int midclose(unsigned cid, unsigned port, uint32_t length) {
    alarm(30);
    int fd = vsock_connect(cid, port);
    if (fd < 0) { printf("VG-RESULT vsock_midclose_guest=connect %s\n", strerror(errno)); return 1; }
    uint32_t head[2] = {99, length};
    int64_t r = write_all(fd, head, 8) < 0 ? -1 : send_pattern(fd, 99, length);
    if (r >= 0) printf("VG-RESULT vsock_midclose_guest=completed\n");
    else printf("VG-RESULT vsock_midclose_guest=%s\n", errno == ECONNRESET ? "reset" : errno == EPIPE ? "epipe" : strerror(errno));
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    crc_init();
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc == 5 && !strcmp(argv[1], "serve")) return serve((unsigned)atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (argc == 6 && !strcmp(argv[1], "connect")) return connect_many((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]), atoi(argv[4]), (uint32_t)atol(argv[5]));
    if (argc == 5 && !strcmp(argv[1], "midclose")) return midclose((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]), (uint32_t)atol(argv[4]));
    fprintf(stderr, "usage: vsock-peer serve PORT COUNT TIMEOUT | connect CID PORT COUNT LENGTH | midclose CID PORT LENGTH\n");
    return 2;
}
