/*
 * The forwarder's per-packet path: one published RTP packet rewritten, SRTP-protected and sent
 * to every subscriber in one call.
 *
 * Why C: in Python, each subscriber of each packet cost a header pack, a join, a history store,
 * a cffi call into libsrtp and an asyncio sendto (~20 us per forwarded packet at 40-80 viewers).
 * Here the Python cost is paid once per published packet and each subscriber costs a memcpy,
 * libsrtp and one sendto(2).
 *
 * `Wire` holds one feed's wire state (media.forwarder.Feed subclasses it and keeps the control
 * side in Python). `fanout()` does for each feed what Feed.send did: wait for a keyframe start,
 * re-base sequence numbers (and timestamps after a new source), drop reordered packets from
 * before the start, rewrite SSRC/seq/ts/PT, lay out the header extensions, keep a NACK history,
 * count, protect and send. A packet that cannot be protected or sent is counted on its feed
 * (send_errors) and dropped for that feed only, never raised.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#define HISTORY_SIZE 512 /* packets kept per video feed for NACKs (~2-4 s at 1 Mbit/s) */
#define HISTORY_MASK (HISTORY_SIZE - 1)
#define START_GUARD 512  /* after a (re)start, older packets are dropped for this many packets */
#define HEADER_MAX 64    /* 12 octets of header and at most 52 of extension block */
#define EXT_MAX 48       /* one extension block (mid of up to 16 octets and one value) */
#define BUFFER_SIZE 2048
#define SRTP_ROOM 64     /* authentication tag and MKI appended by libsrtp */
#define PLAIN_MAX (BUFFER_SIZE - SRTP_ROOM)

/* libsrtp 2: srtp_err_status_t srtp_protect(srtp_t ctx, void *rtp_hdr, int *len_ptr) */
typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

typedef struct {
    PyObject *payload; /* the publisher's payload (bytes), shared by every feed's history */
    uint8_t header[HEADER_MAX];
    uint8_t header_size;
    uint8_t padding;
    uint16_t seq;
} Slot;

typedef struct {
    PyObject_HEAD
    /* exposed to Python (see wire_members) */
    unsigned int ssrc;
    unsigned int rtx_ssrc;
    int payload_type;
    unsigned short next_seq;
    unsigned short rtx_seq;
    unsigned short seq_offset;
    unsigned int ts_offset;
    unsigned int last_ts;
    unsigned int rebase_step; /* timestamp units of one frame: a new source continues here */
    double last_time;
    unsigned long long packets;
    unsigned long long octets;
    unsigned long long retransmitted;
    unsigned long long send_errors;
    char ready;
    char paused;
    char waiting;
    char rebase_ts;
    /* private */
    unsigned short start_seq;
    int guard;
    uint8_t ext_head[EXT_MAX];
    uint8_t ext_tail[4];
    uint8_t ext_plain[EXT_MAX];
    uint8_t head_size, tail_size, plain_size, value_size;
    Slot *history;
    int fd;
    PyObject *sock; /* the socket object fd came from: fd is used only while it still says so */
    PyObject *sock_fileno; /* sock.fileno, bound once: asked before every send */
    struct sockaddr_storage addr;
    socklen_t addr_size;
    void *srtp;
    protect_fn protect;
    PyObject *session;   /* keeps the libsrtp context alive */
    PyObject *py_sendto; /* a transport without a socket of its own (TURN): its sendto */
    PyObject *py_addr;
} Wire;

static PyTypeObject WireType;
static uint8_t buffer[BUFFER_SIZE]; /* every call runs under the GIL, one at a time */
static PyObject *connect_name;      /* "_connect" */
static PyObject *fileno_name;       /* "fileno" */

static void wire_drop_history(Wire *self)
{
    if (self->history == NULL)
        return;
    for (int i = 0; i < HISTORY_SIZE; i++)
        Py_XDECREF(self->history[i].payload);
    PyMem_Free(self->history);
    self->history = NULL;
}

static void wire_disconnect_state(Wire *self)
{
    self->fd = -1;
    Py_CLEAR(self->sock);
    Py_CLEAR(self->sock_fileno);
    self->srtp = NULL;
    self->protect = NULL;
    Py_CLEAR(self->session);
    Py_CLEAR(self->py_sendto);
    Py_CLEAR(self->py_addr);
}

static int wire_traverse(Wire *self, visitproc visit, void *arg)
{
    Py_VISIT(self->session);
    Py_VISIT(self->sock);
    Py_VISIT(self->sock_fileno);
    Py_VISIT(self->py_sendto);
    Py_VISIT(self->py_addr);
    return 0;
}

static int wire_clear(Wire *self)
{
    wire_disconnect_state(self);
    return 0;
}

static void wire_dealloc(Wire *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    wire_clear(self);
    wire_drop_history(self);
    type->tp_free((PyObject *)self);
}

static PyObject *wire_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Wire *self = (Wire *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fd = -1;
    self->waiting = 1;
    self->rebase_step = 1;
    return (PyObject *)self;
}

/* --- protect and send ------------------------------------------------------------------ */

/* Protect `size` plaintext octets in `buffer` and send them. 0 when sent, -1 on a Python
 * error (only from a Python sendto), 1 when dropped (counted in send_errors). */
static int wire_transmit(Wire *self, int size)
{
    int length = size;
    if (self->fd >= 0) {
        /* asyncio closes a transport's socket when the connection goes (ICE consent lost,
         * close()); the number may then be reused by any new socket before the feed hears of
         * it. socket.fileno() is -1 from the moment it is closed: check before each send. */
        PyObject *now = PyObject_CallNoArgs(self->sock_fileno);
        long fd = now == NULL ? -1 : PyLong_AsLong(now);
        Py_XDECREF(now);
        if (fd != self->fd) {
            PyErr_Clear();
            self->send_errors++;
            wire_disconnect_state(self);
            return 1;
        }
    }
    if (self->protect == NULL || self->protect(self->srtp, buffer, &length) != 0) {
        self->send_errors++;
        return 1;
    }
    if (self->fd >= 0) {
        ssize_t sent = sendto(self->fd, buffer, (size_t)length, MSG_DONTWAIT,
                              (struct sockaddr *)&self->addr, self->addr_size);
        if (sent >= 0)
            return 0;
        self->send_errors++;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != EINTR &&
            errno != ECONNREFUSED && errno != EPERM) {
            /* The socket is gone: forget it, the next packet looks again (Feed._connect). */
            wire_disconnect_state(self);
        }
        return 1;
    }
    if (self->py_sendto != NULL) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)buffer, length);
        if (data == NULL)
            return -1;
        PyObject *result = PyObject_CallFunctionObjArgs(self->py_sendto, data, self->py_addr, NULL);
        Py_DECREF(data);
        if (result == NULL) {
            /* A closing transport must not stop the other feeds. */
            PyErr_Clear();
            self->send_errors++;
            wire_disconnect_state(self);
            return 1;
        }
        Py_DECREF(result);
        return 0;
    }
    self->send_errors++;
    return 1;
}

static inline int wire_connected(Wire *self)
{
    return self->protect != NULL && (self->fd >= 0 || self->py_sendto != NULL);
}

/* Ask the Python side to find the socket (Feed._connect); -1 on a Python error. */
static int wire_find_socket(Wire *self)
{
    PyObject *result = PyObject_CallMethodNoArgs((PyObject *)self, connect_name);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

static inline void put16(uint8_t *p, unsigned int v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* --- the fan-out --------------------------------------------------------------------------- */

PyDoc_STRVAR(fanout_doc,
"fanout(feeds, payload, seq, ts, marker, padding, value, keyframe_start, now) -> int\n\n"
"Send one published packet to every Wire in `feeds` (a list or tuple): `payload` (bytes),\n"
"the publisher's sequence number and timestamp, the marker bit, its padding size (0: none),\n"
"`value` (the abs-send-time or audio-level extension value, -1: none), `keyframe_start`\n"
"(None: any packet starts a feed; else called once with the payload if a feed waits) and\n"
"`now` (time.time()). Returns how many feeds were sent the packet.");

/* One published packet, as fanout() got it. */
typedef struct {
    PyObject *payload;
    const uint8_t *data;
    Py_ssize_t size;
    unsigned long seq;
    unsigned long ts;
    int marker;
    int padding;
    long long value;
    double now;
    PyObject *detector;
    int keyframe; /* 1 or 0 once asked, -1 before */
} Packet;

/* The packet to one feed: 1 sent, 0 not sent (not for this feed now, or dropped), -1 on a
 * Python error (from the keyframe detector or Feed._connect). */
static int fan_one(Wire *w, Packet *p)
{
    if (!w->ready || w->paused)
        return 0;
    unsigned long in_seq = p->seq;
    if (w->waiting) {
        if (p->keyframe < 0) {
            PyObject *result = PyObject_CallOneArg(p->detector, p->payload);
            if (result == NULL)
                return -1;
            p->keyframe = PyObject_IsTrue(result);
            Py_DECREF(result);
            if (p->keyframe < 0)
                return -1;
        }
        if (!p->keyframe)
            return 0;
        w->waiting = 0;
        w->seq_offset = (unsigned short)((w->next_seq - in_seq) & 0xFFFF);
        if (w->rebase_ts) {
            /* A new source: continue from the last timestamp sent, one frame later. */
            w->rebase_ts = 0;
            w->ts_offset = (unsigned int)((w->last_ts + w->rebase_step - p->ts) & 0xFFFFFFFFUL);
        }
        w->start_seq = (unsigned short)in_seq;
        w->guard = START_GUARD;
    }
    else if (w->guard) {
        w->guard--;
        if ((in_seq - w->start_seq) & 0x8000)
            return 0; /* reordered from before this feed's start */
    }
    unsigned int seq = (unsigned int)((in_seq + w->seq_offset) & 0xFFFF);
    if (!((seq - w->next_seq) & 0x8000))
        w->next_seq = (unsigned short)((seq + 1) & 0xFFFF);
    uint32_t ts = (uint32_t)((p->ts + w->ts_offset) & 0xFFFFFFFFUL);

    /* The header and extension block. */
    uint8_t h[HEADER_MAX];
    uint8_t first = 0x80;
    int size = 12;
    if (p->padding)
        first |= 0x20;
    if (p->value >= 0 && w->value_size) {
        first |= 0x10;
        memcpy(h + size, w->ext_head, w->head_size);
        size += w->head_size;
        for (int b = w->value_size - 1; b >= 0; b--)
            h[size++] = (uint8_t)(p->value >> (8 * b));
        memcpy(h + size, w->ext_tail, w->tail_size);
        size += w->tail_size;
    }
    else if (w->plain_size) {
        first |= 0x10;
        memcpy(h + size, w->ext_plain, w->plain_size);
        size += w->plain_size;
    }
    h[0] = first;
    h[1] = (uint8_t)((p->marker ? 0x80 : 0) | (w->payload_type & 0x7F));
    put16(h + 2, seq);
    put32(h + 4, ts);
    put32(h + 8, w->ssrc);
    int header_size = size;

    if (w->history != NULL) {
        Slot *slot = &w->history[seq & HISTORY_MASK];
        memcpy(slot->header, h, (size_t)header_size);
        slot->header_size = (uint8_t)header_size;
        slot->padding = (uint8_t)p->padding;
        slot->seq = (uint16_t)seq;
        Py_INCREF(p->payload);
        Py_XSETREF(slot->payload, p->payload);
    }
    w->packets++;
    w->octets += (unsigned long long)p->size;
    w->last_ts = ts;
    w->last_time = p->now;

    if (!wire_connected(w)) {
        if (wire_find_socket(w))
            return -1;
        if (!wire_connected(w))
            return 0; /* not connected yet: dropped, as the history and counters say sent */
    }
    if (header_size + p->size + p->padding > PLAIN_MAX) {
        w->send_errors++;
        return 0;
    }
    memcpy(buffer, h, (size_t)header_size);
    memcpy(buffer + header_size, p->data, (size_t)p->size);
    size = header_size + (int)p->size;
    if (p->padding) {
        memset(buffer + size, 0, (size_t)p->padding - 1);
        size += p->padding;
        buffer[size - 1] = (uint8_t)p->padding;
    }
    int status = wire_transmit(w, size);
    return status < 0 ? -1 : status == 0;
}

static PyObject *fanout(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "fanout() takes exactly 9 arguments");
        return NULL;
    }
    PyObject *feeds = args[0];
    Packet p;
    p.payload = args[1];
    p.detector = args[7];
    if (!PyList_CheckExact(feeds) && !PyTuple_CheckExact(feeds)) {
        PyErr_SetString(PyExc_TypeError, "feeds must be a list or tuple");
        return NULL;
    }
    if (!PyBytes_CheckExact(p.payload)) {
        PyErr_SetString(PyExc_TypeError, "payload must be bytes");
        return NULL;
    }
    p.seq = PyLong_AsUnsignedLongMask(args[2]) & 0xFFFF;
    p.ts = PyLong_AsUnsignedLongMask(args[3]) & 0xFFFFFFFFUL;
    p.marker = PyObject_IsTrue(args[4]);
    long padding = PyLong_AsLong(args[5]);
    p.value = PyLong_AsLongLong(args[6]);
    p.now = PyFloat_AsDouble(args[8]);
    if (PyErr_Occurred())
        return NULL;
    if (padding < 0 || padding > 255) {
        PyErr_SetString(PyExc_ValueError, "padding must be 0-255");
        return NULL;
    }
    p.padding = (int)padding;
    p.data = (const uint8_t *)PyBytes_AS_STRING(p.payload);
    p.size = PyBytes_GET_SIZE(p.payload);
    p.keyframe = p.detector == Py_None ? 1 : -1;
    long sent = 0;

    /* Python code called from here (the detector, Feed._connect) could change a list's items:
     * each feed is held while it is served. */
    Py_INCREF(feeds);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(feeds); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(feeds, i);
        if (!PyObject_TypeCheck(item, &WireType)) {
            Py_DECREF(feeds);
            PyErr_SetString(PyExc_TypeError, "feeds must hold Wire objects");
            return NULL;
        }
        Py_INCREF(item);
        int status = fan_one((Wire *)item, &p);
        Py_DECREF(item);
        if (status < 0) {
            Py_DECREF(feeds);
            return NULL;
        }
        sent += status;
    }
    Py_DECREF(feeds);
    return PyLong_FromLong(sent);
}

/* --- Wire methods (the control side, called from Python) ----------------------------------- */

PyDoc_STRVAR(set_extensions_doc,
"set_extensions(head, tail, plain, value_size)\n\n"
"The feed's extension block (media.rtp.Extensions): head + value + tail when a packet has a\n"
"value of value_size octets (0: never), else plain (b'': no extension block).");

static PyObject *wire_set_extensions(Wire *self, PyObject *args)
{
    Py_buffer head, tail, plain;
    int value_size;
    if (!PyArg_ParseTuple(args, "y*y*y*i", &head, &tail, &plain, &value_size))
        return NULL;
    PyObject *result = NULL;
    if (head.len > EXT_MAX || tail.len > 4 || plain.len > EXT_MAX || value_size < 0 ||
        value_size > 4 || head.len + value_size + tail.len > HEADER_MAX - 12) {
        PyErr_SetString(PyExc_ValueError, "extension block too long");
        goto done;
    }
    memcpy(self->ext_head, head.buf, (size_t)head.len);
    memcpy(self->ext_tail, tail.buf, (size_t)tail.len);
    memcpy(self->ext_plain, plain.buf, (size_t)plain.len);
    self->head_size = (uint8_t)head.len;
    self->tail_size = (uint8_t)tail.len;
    self->plain_size = (uint8_t)plain.len;
    self->value_size = (uint8_t)value_size;
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&head);
    PyBuffer_Release(&tail);
    PyBuffer_Release(&plain);
    return result;
}

PyDoc_STRVAR(keep_history_doc,
"keep_history(enabled)\n\nKeep (or drop) the last 512 packets sent, for retransmit().");

static PyObject *wire_keep_history(Wire *self, PyObject *arg)
{
    int enabled = PyObject_IsTrue(arg);
    if (enabled < 0)
        return NULL;
    if (!enabled) {
        wire_drop_history(self);
    }
    else if (self->history == NULL) {
        self->history = PyMem_Calloc(HISTORY_SIZE, sizeof(Slot));
        if (self->history == NULL)
            return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(connect_doc,
"use_socket(session, srtp, protect, sock, addr, sendto)\n\n"
"Send from now on through libsrtp's srtp_protect (address `protect`) on the context at\n"
"address `srtp` (`session` is kept alive meanwhile), then with sendto(2) to `addr`\n"
"((host, port, ...)) on the descriptor of `sock` (anything with fileno(): checked before each\n"
"send, a closed one is dropped), or, when sock is None, by calling sendto(data, addr).");

static PyObject *wire_connect(Wire *self, PyObject *args)
{
    PyObject *session, *sock, *addr, *sendto_fn, *fileno = NULL;
    unsigned long long srtp, protect;
    int fd = -1;
    if (!PyArg_ParseTuple(args, "OKKOOO", &session, &srtp, &protect, &sock, &addr, &sendto_fn))
        return NULL;
    if (sock != Py_None) {
        fileno = PyObject_GetAttr(sock, fileno_name);
        if (fileno == NULL)
            return NULL;
        PyObject *number = PyObject_CallNoArgs(fileno);
        if (number == NULL)
            goto fail;
        long value = PyLong_AsLong(number);
        Py_DECREF(number);
        if (value == -1 && PyErr_Occurred())
            goto fail;
        if (value < 0 || value > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "the socket is closed");
            goto fail;
        }
        fd = (int)value;
    }
    if (srtp == 0 || protect == 0) {
        PyErr_SetString(PyExc_ValueError, "no SRTP context");
        goto fail;
    }
    if (fd < 0 && !PyCallable_Check(sendto_fn)) {
        PyErr_SetString(PyExc_ValueError, "neither a socket nor a sendto");
        goto fail;
    }
    struct sockaddr_storage storage;
    socklen_t storage_size = 0;
    if (fd >= 0) {
        const char *host;
        int port;
        PyObject *rest;
        if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2) {
            PyErr_SetString(PyExc_ValueError, "addr must be (host, port, ...)");
            goto fail;
        }
        rest = PyTuple_GetSlice(addr, 0, 2);
        if (rest == NULL)
            goto fail;
        int ok = PyArg_ParseTuple(rest, "si", &host, &port);
        if (!ok) {
            Py_DECREF(rest);
            goto fail;
        }
        struct addrinfo hints, *found = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_DGRAM;
        hints.ai_flags = AI_NUMERICHOST;
        int error = getaddrinfo(host, NULL, &hints, &found);
        Py_DECREF(rest);
        if (error != 0 || found == NULL || found->ai_addrlen > sizeof(storage) || port < 0 ||
            port > 65535) {
            if (found != NULL)
                freeaddrinfo(found);
            PyErr_SetString(PyExc_ValueError, "addr is not a numeric address and port");
            goto fail;
        }
        memcpy(&storage, found->ai_addr, found->ai_addrlen);
        storage_size = found->ai_addrlen;
        freeaddrinfo(found);
        if (storage.ss_family == AF_INET)
            ((struct sockaddr_in *)&storage)->sin_port = htons((uint16_t)port);
        else if (storage.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&storage)->sin6_port = htons((uint16_t)port);
    }
    wire_disconnect_state(self);
    self->session = Py_NewRef(session);
    self->srtp = (void *)(uintptr_t)srtp;
    self->protect = (protect_fn)(uintptr_t)protect;
    if (fd >= 0) {
        self->fd = fd;
        self->sock = Py_NewRef(sock);
        self->sock_fileno = fileno; /* our reference */
        self->addr = storage;
        self->addr_size = storage_size;
    }
    else {
        self->py_sendto = Py_NewRef(sendto_fn);
        self->py_addr = Py_NewRef(addr);
    }
    Py_RETURN_NONE;
fail:
    Py_XDECREF(fileno);
    return NULL;
}

PyDoc_STRVAR(disconnect_doc,
"drop_socket()\n\nSend nothing more (until use_socket()); the socket is not closed.");

static PyObject *wire_disconnect(Wire *self, PyObject *unused)
{
    wire_disconnect_state(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(retransmit_doc,
"retransmit(seq, rtx_payload_type) -> bool\n\n"
"Send again the packet sent as `seq`, if still in the history: RFC 4588 RTX (payload type\n"
"rtx_payload_type, rtx_ssrc, the next rtx_seq) or, with rtx_payload_type -1, as it was.");

static PyObject *wire_retransmit(Wire *self, PyObject *args)
{
    int seq, rtx_pt;
    if (!PyArg_ParseTuple(args, "ii", &seq, &rtx_pt))
        return NULL;
    if (self->history == NULL)
        Py_RETURN_FALSE;
    Slot *slot = &self->history[seq & HISTORY_MASK];
    if (slot->payload == NULL || slot->seq != (uint16_t)(seq & 0xFFFF))
        Py_RETURN_FALSE;
    if (!wire_connected(self)) {
        if (wire_find_socket(self))
            return NULL;
        if (!wire_connected(self))
            Py_RETURN_FALSE;
        if (slot->payload == NULL)
            Py_RETURN_FALSE;
    }
    /* The slot's payload stays ours while Python code could run (a Python sendto). */
    PyObject *payload = Py_NewRef(slot->payload);
    Py_ssize_t data_size = PyBytes_GET_SIZE(payload);
    int header_size = slot->header_size;
    int size;
    if (header_size + 2 + data_size + slot->padding > PLAIN_MAX) {
        Py_DECREF(payload);
        self->send_errors++;
        Py_RETURN_FALSE;
    }
    memcpy(buffer, slot->header, (size_t)header_size);
    if (rtx_pt >= 0) {
        buffer[0] &= (uint8_t)~0x20; /* the RTX packet carries no padding */
        buffer[1] = (uint8_t)((buffer[1] & 0x80) | (rtx_pt & 0x7F));
        put16(buffer + 2, self->rtx_seq);
        put32(buffer + 8, self->rtx_ssrc);
        self->rtx_seq = (unsigned short)((self->rtx_seq + 1) & 0xFFFF);
        put16(buffer + header_size, slot->seq);
        memcpy(buffer + header_size + 2, PyBytes_AS_STRING(payload), (size_t)data_size);
        size = header_size + 2 + (int)data_size;
    }
    else {
        memcpy(buffer + header_size, PyBytes_AS_STRING(payload), (size_t)data_size);
        size = header_size + (int)data_size;
        if (slot->padding) {
            memset(buffer + size, 0, (size_t)slot->padding - 1);
            size += slot->padding;
            buffer[size - 1] = slot->padding;
        }
    }
    int status = wire_transmit(self, size);
    Py_DECREF(payload);
    if (status < 0)
        return NULL;
    if (status > 0)
        Py_RETURN_FALSE;
    self->retransmitted++;
    Py_RETURN_TRUE;
}

static PyObject *wire_get_connected(Wire *self, void *closure)
{
    return PyBool_FromLong(wire_connected(self));
}

static PyObject *wire_get_keeps_history(Wire *self, void *closure)
{
    return PyBool_FromLong(self->history != NULL);
}

static PyMethodDef wire_methods[] = {
    {"set_extensions", (PyCFunction)wire_set_extensions, METH_VARARGS, set_extensions_doc},
    {"keep_history", (PyCFunction)wire_keep_history, METH_O, keep_history_doc},
    {"use_socket", (PyCFunction)wire_connect, METH_VARARGS, connect_doc},
    {"drop_socket", (PyCFunction)wire_disconnect, METH_NOARGS, disconnect_doc},
    {"retransmit", (PyCFunction)wire_retransmit, METH_VARARGS, retransmit_doc},
    {NULL},
};

static PyGetSetDef wire_getset[] = {
    {"connected", (getter)wire_get_connected, NULL, "True once use_socket() gave a way to send.",
     NULL},
    {"keeps_history", (getter)wire_get_keeps_history, NULL, "True while keep_history(True).",
     NULL},
    {NULL},
};

#define MEMBER(name, type, doc) {#name, type, offsetof(Wire, name), 0, doc}

static PyMemberDef wire_members[] = {
    MEMBER(ssrc, T_UINT, "SSRC the packets are rewritten to"),
    MEMBER(rtx_ssrc, T_UINT, "SSRC of retransmissions"),
    MEMBER(payload_type, T_INT, "negotiated payload type"),
    MEMBER(next_seq, T_USHORT, "the sequence number after the highest one sent"),
    MEMBER(rtx_seq, T_USHORT, "the next retransmission's sequence number"),
    MEMBER(seq_offset, T_USHORT, "added to the publisher's sequence numbers"),
    MEMBER(ts_offset, T_UINT, "added to the publisher's timestamps"),
    MEMBER(last_ts, T_UINT, "the last timestamp sent"),
    MEMBER(rebase_step, T_UINT, "timestamp step after the last one sent when re-based"),
    MEMBER(last_time, T_DOUBLE, "time.time() of the last packet sent"),
    MEMBER(packets, T_ULONGLONG, "packets sent"),
    MEMBER(octets, T_ULONGLONG, "payload octets sent"),
    MEMBER(retransmitted, T_ULONGLONG, "packets sent again from the history"),
    MEMBER(send_errors, T_ULONGLONG, "packets dropped: not protected or not sent"),
    MEMBER(ready, T_BOOL, "negotiated and connected: packets are sent"),
    MEMBER(paused, T_BOOL, "nothing is sent while paused"),
    MEMBER(waiting, T_BOOL, "waiting for a keyframe start to (re)start"),
    MEMBER(rebase_ts, T_BOOL, "at the restart, continue from the last timestamp sent"),
    {NULL},
};

PyDoc_STRVAR(wire_doc,
"Wire()\n\nOne feed's wire state: what fanout() rewrites, counts, keeps and sends.");

static PyTypeObject WireType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._fanout.Wire",
    .tp_basicsize = sizeof(Wire),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = wire_doc,
    .tp_new = wire_new,
    .tp_dealloc = (destructor)wire_dealloc,
    .tp_traverse = (traverseproc)wire_traverse,
    .tp_clear = (inquiry)wire_clear,
    .tp_methods = wire_methods,
    .tp_members = wire_members,
    .tp_getset = wire_getset,
};

static PyMethodDef module_methods[] = {
    {"fanout", (PyCFunction)(void (*)(void))fanout, METH_FASTCALL, fanout_doc},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "media._fanout",
    .m_doc = "The forwarder's per-packet path in C: rewrite, protect and send to every feed.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void)
{
    if (PyType_Ready(&WireType) < 0)
        return NULL;
    connect_name = PyUnicode_InternFromString("_connect");
    fileno_name = PyUnicode_InternFromString("fileno");
    if (connect_name == NULL || fileno_name == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Wire", (PyObject *)&WireType) < 0 ||
        PyModule_AddIntConstant(module, "HISTORY_SIZE", HISTORY_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "START_GUARD", START_GUARD) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
