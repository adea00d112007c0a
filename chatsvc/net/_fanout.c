/*
 * chatsvc.net._fanout: the same bytes to many sockets in one call from
 * Python, for chatsvc.net.sendqueue.push_to_all.
 *
 * A room's notify goes to every member's socket. Through socket.send, each of
 * those sends parses its arguments into a new tuple, releases and takes back
 * the GIL and makes a new int, which costs about as much again as a
 * non-blocking send() on loopback. Here the sends are plain send() calls in a
 * loop, with the GIL held: every socket is non-blocking (MSG_DONTWAIT makes
 * sure), so no call waits.
 *
 * Built where setup.py can compile it (CPython on POSIX); without it
 * chatsvc.net.sendqueue sends through the sockets' own send.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

PyDoc_STRVAR(send_each_doc,
"send_each(fds, data, start=0, /)\n"
"--\n"
"\n"
"Send all of data on each of the sockets fds[start:] (a list of file\n"
"descriptors), in order, without blocking. Return None if every socket\n"
"took all of it; else stop at the first that did not and return\n"
"(its index, the bytes it took): 0 when its send failed (it would block,\n"
"the connection is broken, the descriptor is closed), for the caller to\n"
"find out through the socket's own transport.");

static PyObject *
send_each(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *fds;
    Py_buffer data;
    Py_ssize_t start = 0, count, index;
    PyObject *result;

    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError,
                     "send_each() takes 2 or 3 positional arguments (%zd given)", nargs);
        return NULL;
    }
    fds = args[0];
    if (!PyList_Check(fds)) {
        PyErr_Format(PyExc_TypeError, "send_each() fds must be a list, not %.100s",
                     Py_TYPE(fds)->tp_name);
        return NULL;
    }
    if (nargs == 3) {
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
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    for (index = start; index < count; index++) {
        int fd = (int)PyLong_AsLong(PyList_GET_ITEM(fds, index));
        ssize_t sent;

        do {
            sent = send(fd, data.buf, (size_t)data.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        if (sent != data.len) {
            result = Py_BuildValue("(nn)", index, sent < 0 ? (Py_ssize_t)0 : (Py_ssize_t)sent);
            PyBuffer_Release(&data);
            return result;
        }
    }
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
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
