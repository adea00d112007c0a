/*
 * chatsvc.protocol._framing: the packet splitting of
 * chatsvc.protocol.framing.PacketDecoder, in C.
 *
 * A chat request is a few dozen bytes: splitting one off in Python (unpack the
 * header, check its length, slice the body, make the packet) costs more than
 * everything else the server does with it short of the sends. This does the
 * same steps, with the same results, in one call per batch.
 *
 * Built where setup.py can compile it (CPython on POSIX); without it the
 * decoder splits packets in Python.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define HEADER_SIZE 5
#define MAX_WIRE_PACKET_SIZE 0xFFFF

/* A new instance of the tuple subclass packet_type holding (id, type, body),
 * as tuple.__new__(packet_type, (id, type, body)) makes it. */
static PyObject *
new_packet(PyTypeObject *packet_type, long packet_id, long type,
           const char *body, Py_ssize_t size)
{
    PyObject *items[3], *packet;
    int i;

    items[0] = PyLong_FromLong(packet_id);
    items[1] = PyLong_FromLong(type);
    items[2] = PyBytes_FromStringAndSize(body, size);
    if (items[0] == NULL || items[1] == NULL || items[2] == NULL) {
        packet = NULL;
        goto done;
    }
#if PY_VERSION_HEX < 0x030E0000
    /* What tuple.__new__ does for a subclass, without its argument tuple. */
    packet = packet_type->tp_alloc(packet_type, 3);
    if (packet != NULL) {
        for (i = 0; i < 3; i++) {
            PyTuple_SET_ITEM(packet, i, items[i]);
            items[i] = NULL;
        }
    }
#else
    {
        /* Newer tuples carry more than their items: let tuple.__new__ set
         * them up. */
        PyObject *values = PyTuple_New(3), *args;

        if (values == NULL) {
            packet = NULL;
            goto done;
        }
        for (i = 0; i < 3; i++) {
            PyTuple_SET_ITEM(values, i, items[i]);
            items[i] = NULL;
        }
        args = PyTuple_Pack(1, values);
        Py_DECREF(values);
        packet = args == NULL ? NULL : PyTuple_Type.tp_new(packet_type, args, NULL);
        Py_XDECREF(args);
    }
#endif
done:
    for (i = 0; i < 3; i++) {
        Py_XDECREF(items[i]);
    }
    return packet;
}

PyDoc_STRVAR(split_packets_doc,
"split_packets(buffer, offset, limit, maximum, packet_type, /)\n"
"--\n"
"\n"
"Split up to limit complete packets off buffer (bytes-like) from offset.\n"
"Return (packets, end, bad_length): the packets as packet_type(id, type,\n"
"body) (packet_type a tuple subclass adding no fields, such as a\n"
"NamedTuple), the offset after the last of them, and the length field of\n"
"the packet at end when it is below the header size or above maximum\n"
"(the stream is broken there), else -1.");

static PyObject *
split_packets(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t offset, limit, maximum, size, count = 0;
    PyTypeObject *packet_type;
    PyObject *packets;
    long bad_length = -1;
    const unsigned char *bytes;

    (void)module;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "split_packets() takes 5 positional arguments (%zd given)", nargs);
        return NULL;
    }
    offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    maximum = PyLong_AsSsize_t(args[3]);
    if (maximum == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyType_Check(args[4])
        || !PyType_IsSubtype((PyTypeObject *)args[4], &PyTuple_Type)
        || ((PyTypeObject *)args[4])->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError,
                        "split_packets() packet_type must be a tuple subclass without"
                        " fields of its own");
        return NULL;
    }
    packet_type = (PyTypeObject *)args[4];
    if (limit < 0 || maximum < HEADER_SIZE || maximum > MAX_WIRE_PACKET_SIZE) {
        PyErr_SetString(PyExc_ValueError,
                        "split_packets() needs limit >= 0 and maximum in 5..65535");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    size = view.len;
    if (offset < 0 || offset > size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "split_packets() offset out of range");
        return NULL;
    }
    packets = PyList_New(0);
    if (packets == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    bytes = (const unsigned char *)view.buf;
    while (count < limit && size - offset >= HEADER_SIZE) {
        const unsigned char *header = bytes + offset;
        long length = header[0] | (header[1] << 8);
        PyObject *packet;

        if (length < HEADER_SIZE || length > maximum) {
            bad_length = length;
            break;
        }
        if (length > size - offset) {
            break;
        }
        packet = new_packet(packet_type, header[2] | (header[3] << 8), header[4],
                            (const char *)header + HEADER_SIZE, length - HEADER_SIZE);
        if (packet == NULL || PyList_Append(packets, packet) < 0) {
            Py_XDECREF(packet);
            Py_DECREF(packets);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(packet);
        offset += length;
        count++;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(Nnl)", packets, offset, bad_length);
}

static PyMethodDef framing_methods[] = {
    {"split_packets", (PyCFunction)(void (*)(void))split_packets, METH_FASTCALL,
     split_packets_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef framing_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "chatsvc.protocol._framing",
    .m_doc = "Packet splitting in C (see chatsvc.protocol.framing).",
    .m_size = 0,
    .m_methods = framing_methods,
};

PyMODINIT_FUNC
PyInit__framing(void)
{
    return PyModuleDef_Init(&framing_module);
}
