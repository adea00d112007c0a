/*
 * chatsvc.net._fanout: the same bytes to many sockets in one call from
 * Python, for chatsvc.net.sendqueue.push_to_all.
 *
 * A room's notify goes to every member's socket. Through socket.send, each of
 * those sends parses its arguments into a new tuple, releases and takes back
 * the GIL and makes a new int, which costs about as much again as a
 * non-blocking send() on loopback. Here the sends are plain send() calls in a
 * loop, with the GIL held: every socket is non-blocking (MSG_DONTWAIT makes
 * sure), so no call waits. A member may have bytes of its own to go first
 * (the answers to its requests of the turn): they leave in the same call.
 *
 * On Linux, bytes of SPLICE_MIN or more for several sockets are copied once
 * into a pipe instead of once per socket: each socket gets a tee() of the
 * pipe's pages, spliced into it without a copy (the pages are shared by the
 * sockets' buffers until their receivers read them). At a busy room's end of
 * turn (100 members, 100 KB of notifies each) that takes a third off the cost
 * of its sends; below SPLICE_MIN the two extra system calls cost about what
 * the copy they save does. splice() cannot be given MSG_NOSIGNAL: a
 * connection reset by its peer raises SIGPIPE, which Python ignores (every
 * socket.send relies on that too).
 *
 * Built where setup.py can compile it (CPython on POSIX); without it
 * chatsvc.net.sendqueue sends through the sockets' own send.
 */

#define PY_SSIZE_T_CLEAN
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1 /* tee(), splice() */
#endif
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __linux__
#include <fcntl.h>
#include <unistd.h>
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define SEND_FLAGS (MSG_DONTWAIT | MSG_NOSIGNAL)

/* Send head (may be empty) then data on fd in one system call; return the
   bytes taken, 0 for a failed send. */
static Py_ssize_t
send_copied(int fd, const char *head, Py_ssize_t head_len, const Py_buffer *data)
{
    ssize_t sent;

    if (head_len == 0) {
        do {
            sent = send(fd, data->buf, (size_t)data->len, SEND_FLAGS);
        } while (sent < 0 && errno == EINTR);
    }
    else {
        struct iovec iov[2] = {
            {(void *)head, (size_t)head_len},
            {data->buf, (size_t)data->len},
        };
        struct msghdr message = {.msg_iov = iov, .msg_iovlen = 2};

        do {
            sent = sendmsg(fd, &message, SEND_FLAGS);
        } while (sent < 0 && errno == EINTR);
    }
    return sent < 0 ? 0 : (Py_ssize_t)sent;
}

#ifdef __linux__

#define SPLICE_MIN 32768
#define SPLICE_SOCKETS 4 /* the fewest sockets worth the copy into the pipe */
#define PIPE_SIZE (1 << 20)

/* The pipes of this process: src holds the bytes of the call, tmp each
   socket's tee() of them on its way into the socket. */
static struct {
    pid_t pid; /* the process that made them: after a fork, make new ones */
    int src[2];
    int tmp[2];
    int devnull;
    Py_ssize_t capacity; /* 0: splicing is not available */
} pipes = {.pid = -1, .src = {-1, -1}, .tmp = {-1, -1}, .devnull = -1};

static void
close_pipes(void)
{
    int *fds[] = {&pipes.src[0], &pipes.src[1], &pipes.tmp[0], &pipes.tmp[1],
                  &pipes.devnull};

    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0) {
            close(*fds[i]);
        }
        *fds[i] = -1;
    }
    pipes.capacity = 0;
}

static Py_ssize_t
pipe_capacity(int fd)
{
    int size = fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE);

    if (size < 0) {
        size = fcntl(fd, F_GETPIPE_SZ);
    }
    return size < 0 ? 0 : (Py_ssize_t)size;
}

/* Whether the pipes are there and hold len bytes: made on first use in
   each process. */
static int
pipes_ready(Py_ssize_t len)
{
    pid_t pid = getpid();

    if (pipes.pid != pid) {
        Py_ssize_t src, tmp;

        close_pipes();
        pipes.pid = pid;
        if (pipe2(pipes.src, O_NONBLOCK | O_CLOEXEC) < 0
            || pipe2(pipes.tmp, O_NONBLOCK | O_CLOEXEC) < 0
            || (pipes.devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
            close_pipes();
            pipes.pid = -1; /* out of descriptors, say: try again next time */
            return 0;
        }
        src = pipe_capacity(pipes.src[1]);
        tmp = pipe_capacity(pipes.tmp[1]);
        pipes.capacity = src < tmp ? src : tmp;
    }
    return len <= pipes.capacity;
}

/* Throw away len bytes at the head of the pipe read from fd; on failure, the
   pipes are given up (and made again on next use). */
static void
discard(int fd, Py_ssize_t len)
{
    while (len > 0) {
        ssize_t dropped = splice(fd, NULL, pipes.devnull, NULL, (size_t)len,
                                 SPLICE_F_NONBLOCK);

        if (dropped <= 0) {
            if (dropped < 0 && errno == EINTR) {
                continue;
            }
            close_pipes();
            pipes.pid = -1;
            return;
        }
        len -= dropped;
    }
}

/* Put data into the src pipe; return whether all of it is there. */
static int
fill_pipe(const Py_buffer *data)
{
    Py_ssize_t written = 0;

    while (written < data->len) {
        ssize_t n = write(pipes.src[1], (const char *)data->buf + written,
                          (size_t)(data->len - written));

        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            discard(pipes.src[0], written);
            return 0;
        }
        written += n;
    }
    return 1;
}

/* send_copied, with data spliced from the src pipe (which keeps it). */
static Py_ssize_t
send_spliced(int fd, const char *head, Py_ssize_t head_len, const Py_buffer *data)
{
    ssize_t copies, sent;

    if (head_len > 0) {
        /* MSG_MORE: the head waits for the spliced bytes, one segment. */
        do {
            sent = send(fd, head, (size_t)head_len, SEND_FLAGS | MSG_MORE);
        } while (sent < 0 && errno == EINTR);
        if (sent != head_len) {
            return sent < 0 ? 0 : (Py_ssize_t)sent;
        }
    }
    do {
        copies = tee(pipes.src[0], pipes.tmp[1], (size_t)data->len, SPLICE_F_NONBLOCK);
    } while (copies < 0 && errno == EINTR);
    if (copies != data->len) {
        discard(pipes.tmp[0], copies < 0 ? 0 : copies);
        return head_len + send_copied(fd, NULL, 0, data);
    }
    do {
        sent = splice(pipes.tmp[0], NULL, fd, NULL, (size_t)data->len,
                      SPLICE_F_NONBLOCK);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        sent = 0;
    }
    discard(pipes.tmp[0], data->len - sent);
    return head_len + sent;
}

#endif /* __linux__ */

PyDoc_STRVAR(send_each_doc,
"send_each(fds, data, start=0, heads=None, /)\n"
"--\n"
"\n"
"Send all of data on each of the sockets fds[start:] (a list of file\n"
"descriptors), in order, without blocking; with heads (a list of bytes as\n"
"long as fds), heads[i] goes first on fds[i], in the same call. Return None\n"
"if every socket took all of it; else stop at the first that did not and\n"
"return (its index, the bytes it took of its head and data): 0 when its send\n"
"failed (it would block, the connection is broken, the descriptor is\n"
"closed), for the caller to find out through the socket's own transport.");

static PyObject *
send_each(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *fds, *heads = Py_None;
    Py_buffer data;
    Py_ssize_t start = 0, count, index;
    PyObject *result = Py_None;
#ifdef __linux__
    int spliced;
#endif

    if (nargs < 2 || nargs > 4) {
        PyErr_Format(PyExc_TypeError,
                     "send_each() takes 2 to 4 positional arguments (%zd given)", nargs);
        return NULL;
    }
    fds = args[0];
    if (!PyList_Check(fds)) {
        PyErr_Format(PyExc_TypeError, "send_each() fds must be a list, not %.100s",
                     Py_TYPE(fds)->tp_name);
        return NULL;
    }
    if (nargs >= 3) {
        start = PyLong_AsSsize_t(args[2]);
        if (start == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    count = PyList_GET_SIZE(fds);
    if (start < 0 || start > count) {
        PyErr_SetString(PyExc_ValueError, "send_each() start out of range");
        return NULL;
    }
    if (nargs == 4 && args[3] != Py_None) {
        heads = args[3];
        if (!PyList_Check(heads) || PyList_GET_SIZE(heads) != count) {
            PyErr_SetString(PyExc_TypeError,
                            "send_each() heads must be a list as long as fds");
            return NULL;
        }
    }
    for (index = start; index < count; index++) {
        PyObject *fd = PyList_GET_ITEM(fds, index);
        long value;

        if (!PyLong_Check(fd)) {
            PyErr_Format(PyExc_TypeError,
                         "send_each() fds[%zd] must be an int, not %.100s", index,
                         Py_TYPE(fd)->tp_name);
            return NULL;
        }
        value = PyLong_AsLong(fd);
        if (value == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (value < -1 || value > INT_MAX) {
            PyErr_Format(PyExc_ValueError,
                         "send_each() fds[%zd] is not a file descriptor", index);
            return NULL;
        }
        if (heads != Py_None && !PyBytes_Check(PyList_GET_ITEM(heads, index))) {
            PyErr_Format(PyExc_TypeError,
                         "send_each() heads[%zd] must be bytes, not %.100s", index,
                         Py_TYPE(PyList_GET_ITEM(heads, index))->tp_name);
            return NULL;
        }
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
#ifdef __linux__
    spliced = data.len >= SPLICE_MIN && count - start >= SPLICE_SOCKETS
              && pipes_ready(data.len) && fill_pipe(&data);
#endif
    for (index = start; index < count; index++) {
        int fd = (int)PyLong_AsLong(PyList_GET_ITEM(fds, index));
        const char *head = NULL;
        Py_ssize_t head_len = 0, taken;

        if (heads != Py_None) {
            PyObject *bytes = PyList_GET_ITEM(heads, index);

            head = PyBytes_AS_STRING(bytes);
            head_len = PyBytes_GET_SIZE(bytes);
        }
#ifdef __linux__
        if (spliced && pipes.capacity > 0 && fd >= 0) {
            taken = send_spliced(fd, head, head_len, &data);
        }
        else
#endif
        {
            taken = send_copied(fd, head, head_len, &data);
        }
        if (taken != head_len + data.len) {
            result = Py_BuildValue("(nn)", index, taken);
            break;
        }
    }
#ifdef __linux__
    if (spliced) {
        discard(pipes.src[0], data.len);
    }
#endif
    PyBuffer_Release(&data);
    if (result == Py_None) {
        Py_RETURN_NONE;
    }
    return result;
}

static PyMethodDef fanout_methods[] = {
    {"send_each", (PyCFunction)(void (*)(void))send_each, METH_FASTCALL, send_each_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fanout_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "chatsvc.net._fanout",
    .m_doc = "The same bytes to many sockets in one call (see chatsvc.net.sendqueue).",
    .m_size = 0,
    .m_methods = fanout_methods,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    return PyModuleDef_Init(&fanout_module);
}
