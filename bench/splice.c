/*
 * bench/splice.c: what the same bytes cost to send to many sockets, copied
 * into each (send(), or sendmsg() after a 10-byte head) or spliced from a
 * pipe (tee() and splice(), after the head sent with MSG_MORE): the two ways
 * chatsvc/net/_fanout.c sends a room's bytes on Linux, and where it switches
 * from one to the other (SPLICE_MIN).
 *
 *   cc -O2 -pthread -o /tmp/splice bench/splice.c && /tmp/splice [ROUNDS]
 *
 * 100 loopback TCP connections; the sender runs on the first CPU this
 * process may use, a reader draining every connection on the second. For
 * each size, ROUNDS rounds (default 1000) each send the bytes to every socket
 * once in each of the four ways, one after the other; before each send the
 * sender waits for the reader to have read everything, so no socket is full.
 * Printed: the sender's CPU time per socket (its thread's, not the wait),
 * in microseconds, over all rounds.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SOCKETS 100
#define WAYS 4

static const char *const way_names[WAYS] = {
    "send", "sendmsg, head", "tee+splice", "tee+splice, head"};
static const size_t sizes[] = {4096, 16384, 32768, 65536, 100000};
static const char head[10] = "response;";

static int ours[SOCKETS], theirs[SOCKETS];
static long sent_total, read_total;
static int pipe_src[2], pipe_tmp[2], devnull;

static void
die(const char *what)
{
    perror(what);
    exit(1);
}

static int
nth_cpu(int n)
{
    cpu_set_t allowed;

    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0) {
        die("sched_getaffinity");
    }
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &allowed) && n-- == 0) {
            return cpu;
        }
    }
    return -1;
}

static void
pin(int cpu)
{
    cpu_set_t set;

    if (cpu < 0) {
        return;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *
reader(void *cpu)
{
    static char buffer[1 << 20];
    struct epoll_event events[SOCKETS];
    int poll = epoll_create1(0);

    pin(*(int *)cpu);
    for (int i = 0; i < SOCKETS; i++) {
        struct epoll_event event = {.events = EPOLLIN, .data.fd = theirs[i]};

        epoll_ctl(poll, EPOLL_CTL_ADD, theirs[i], &event);
    }
    for (;;) {
        int ready = epoll_wait(poll, events, SOCKETS, -1);

        for (int i = 0; i < ready; i++) {
            ssize_t n;

            while ((n = recv(events[i].data.fd, buffer, sizeof buffer, MSG_DONTWAIT)) > 0) {
                __atomic_add_fetch(&read_total, n, __ATOMIC_RELAXED);
            }
        }
    }
    return NULL;
}

static double
thread_cpu(void)
{
    struct timespec now;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void
connect_all(void)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    socklen_t length = sizeof address;
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0
        || listen(listener, SOCKETS) < 0
        || getsockname(listener, (struct sockaddr *)&address, &length) < 0) {
        die("listen");
    }
    for (int i = 0; i < SOCKETS; i++) {
        theirs[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(theirs[i], (struct sockaddr *)&address, sizeof address) < 0
            || (ours[i] = accept(listener, NULL, NULL)) < 0) {
            die("connect");
        }
        setsockopt(ours[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(ours[i], F_SETFL, O_NONBLOCK);
    }
    close(listener);
}

static void
check(ssize_t result, ssize_t wanted, const char *what)
{
    if (result != wanted) {
        fprintf(stderr, "%s: %zd of %zd bytes (%s)\n", what, result, wanted,
                strerror(errno));
        exit(1);
    }
}

/* Send size bytes of data to every socket, in one of the four ways. */
static void
send_to_all(int way, const char *data, size_t size)
{
    size_t wanted = size + (way % 2 ? sizeof head : 0);

    if (way >= 2) {
        check(write(pipe_src[1], data, size), (ssize_t)size, "write");
    }
    for (int i = 0; i < SOCKETS; i++) {
        int fd = ours[i];

        if (way == 0) {
            check(send(fd, data, size, MSG_DONTWAIT), (ssize_t)size, "send");
        }
        else if (way == 1) {
            struct iovec iov[2] = {{(void *)head, sizeof head}, {(void *)data, size}};
            struct msghdr message = {.msg_iov = iov, .msg_iovlen = 2};

            check(sendmsg(fd, &message, MSG_DONTWAIT), (ssize_t)wanted, "sendmsg");
        }
        else {
            if (way == 3) {
                check(send(fd, head, sizeof head, MSG_DONTWAIT | MSG_MORE),
                      sizeof head, "send");
            }
            check(tee(pipe_src[0], pipe_tmp[1], size, SPLICE_F_NONBLOCK),
                  (ssize_t)size, "tee");
            check(splice(pipe_tmp[0], NULL, fd, NULL, size, SPLICE_F_NONBLOCK),
                  (ssize_t)size, "splice");
        }
        sent_total += (long)wanted;
    }
    if (way >= 2) {
        check(splice(pipe_src[0], NULL, devnull, NULL, size, SPLICE_F_NONBLOCK),
              (ssize_t)size, "splice to /dev/null");
    }
}

int
main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    int sender_cpu = nth_cpu(0), reader_cpu = nth_cpu(1);
    pthread_t thread;

    if (rounds < 1) {
        fprintf(stderr, "usage: %s [ROUNDS]\n", argv[0]);
        return 2;
    }
    connect_all();
    if (pipe2(pipe_src, O_NONBLOCK) < 0 || pipe2(pipe_tmp, O_NONBLOCK) < 0
        || (devnull = open("/dev/null", O_WRONLY)) < 0) {
        die("pipe");
    }
    fcntl(pipe_src[1], F_SETPIPE_SZ, 1 << 20);
    fcntl(pipe_tmp[1], F_SETPIPE_SZ, 1 << 20);
    pthread_create(&thread, NULL, reader, &reader_cpu);
    pin(sender_cpu);
    printf("%d sockets, %d rounds, sender on CPU %d, reader on CPU %d\n"
           "sender's CPU per socket, us:\n%8s", SOCKETS, rounds, sender_cpu,
           reader_cpu, "bytes");
    for (int way = 0; way < WAYS; way++) {
        printf("  %16s", way_names[way]);
    }
    printf("\n");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t size = sizes[s];
        char *data = malloc(size);
        double cpu[WAYS] = {0};

        memset(data, 'n', size);
        for (int round = 0; round < rounds; round++) {
            for (int way = 0; way < WAYS; way++) {
                double start;

                while (__atomic_load_n(&read_total, __ATOMIC_RELAXED) < sent_total) {
                    sched_yield();
                }
                start = thread_cpu();
                send_to_all(way, data, size);
                cpu[way] += thread_cpu() - start;
            }
        }
        printf("%8zu", size);
        for (int way = 0; way < WAYS; way++) {
            printf("  %16.2f", cpu[way] / rounds / SOCKETS * 1e6);
        }
        printf("\n");
        free(data);
    }
    return 0;
}
