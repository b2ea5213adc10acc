/*
 * tracer.c: the greenlet trace callable and its handle methods.
 *
 * greenlet calls a thread's trace function as f(event, (origin, target))
 * on every switch, with tracing disabled meanwhile. hubmon's Tracer does as
 * little as it can there: it bumps a switch counter, notes whether the
 * target is the hub, stores the target's identity (an address, never a
 * reference) and calls the trace function that was installed before it.
 * No clock read, no allocation, no Python call of its own. A Tracer never
 * raises: greenlet would drop it and inject the error into the switch.
 */
#include "hubmon.h"

#include "structmember.h"

#include <math.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    hm_record *rec;         /* owned reference; NULL once detached */
    PyObject *previous;     /* the trace function installed before, or NULL */
    int installed;
} hm_tracer;

/* Adds one to a counter that only the traced thread writes: a relaxed
   load and store, which compile to plain moves. */
#define HM_BUMP(counter) \
    atomic_store_explicit(&(counter), \
        atomic_load_explicit(&(counter), memory_order_relaxed) + 1, \
        memory_order_relaxed)

/* The per-switch hot path. Needs the GIL (greenlet holds it). Returns a new
   reference to None or to what the previous trace function returned; never
   NULL. */
static PyObject *
tracer_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                  PyObject *kwnames)
{
    hm_tracer *self = (hm_tracer *)callable;
    hm_record *rec = self->rec;
    if (rec != NULL && PyVectorcall_NARGS(nargsf) == 2) {
        PyObject *pair = args[1];
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) {
            uintptr_t target = (uintptr_t)PyTuple_GET_ITEM(pair, 1);
            HM_BUMP(rec->switches);
            if (target == rec->hub) {
                HM_BUMP(rec->hub_switches);
                atomic_store_explicit(&rec->hub_running, 1, memory_order_relaxed);
            }
            else {
                atomic_store_explicit(&rec->hub_running, 0, memory_order_relaxed);
                /* The native thread dozes only while every hub runs: the
                   first switch away from one wakes it. A relaxed load: in
                   the rare race where it reads a stale 0, the doze ends at
                   its timeout instead. */
                if (atomic_load_explicit(&hm_dozing, memory_order_relaxed)) {
                    hm_sampler_poke();
                }
            }
            atomic_store_explicit(&rec->current, target, memory_order_relaxed);
        }
    }
    if (self->previous != NULL) {
        PyObject *result = PyObject_Vectorcall(self->previous, args, nargsf, kwnames);
        if (result == NULL) {
            /* The previous function's error must not unhook hubmon. */
            PyErr_WriteUnraisable(self->previous);
            Py_RETURN_NONE;
        }
        return result;
    }
    Py_RETURN_NONE;
}

/* Tracer(hub, current, threshold, *, mode="hub", report=True): a tracer and
   its record. `hub` is the hub greenlet or None; `current` the greenlet
   running now. Neither is kept: only their identities. */
static PyObject *
tracer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"hub", "current", "threshold", "mode", "report", NULL};
    PyObject *hub = NULL, *current = NULL;
    double threshold = 0.0;
    const char *mode_name = "hub";
    int report = 1;
    hm_tracer *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOd|$sp:Tracer", keywords,
                                     &hub, &current, &threshold, &mode_name,
                                     &report)) {
        goto error;
    }
    if (!(threshold > 0.0) || !isfinite(threshold)) {
        PyErr_Format(PyExc_ValueError,
                     "threshold must be a finite number of seconds > 0, not %R",
                     PyTuple_GET_ITEM(args, 2));
        goto error;
    }
    int mode;
    if (strcmp(mode_name, "hub") == 0) {
        mode = HM_MODE_HUB;
    }
    else if (strcmp(mode_name, "any") == 0) {
        mode = HM_MODE_ANY;
    }
    else {
        PyErr_Format(PyExc_ValueError, "mode must be 'hub' or 'any', not %R",
                     PyTuple_Size(args) > 3 ? PyTuple_GET_ITEM(args, 3) : Py_None);
        goto error;
    }
    if (mode == HM_MODE_HUB && hub == Py_None) {
        PyErr_SetString(PyExc_TypeError, "mode 'hub' needs a hub greenlet");
        goto error;
    }
    self = (hm_tracer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->vectorcall = tracer_vectorcall;
    uintptr_t hub_id = hub == Py_None ? 0 : (uintptr_t)hub;
    self->rec = hm_record_new(mode, hub_id, threshold, report);
    if (self->rec == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    atomic_store(&self->rec->current, (uintptr_t)current);
    atomic_store(&self->rec->hub_running, hub_id != 0 && (uintptr_t)current == hub_id);
    return (PyObject *)self;

error:
    Py_XDECREF(self);
    return NULL;
}

static int
tracer_traverse(hm_tracer *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->previous);
    return 0;
}

static int
tracer_clear(hm_tracer *self)
{
    Py_CLEAR(self->previous);
    return 0;
}

/* Drops the record: out of the sampler's list, and this tracer's reference.
   Needs the GIL. */
static void
tracer_detach(hm_tracer *self)
{
    hm_record *rec = self->rec;
    if (rec != NULL) {
        self->rec = NULL;
        hm_sampler_remove(rec);
        hm_record_decref(rec);
    }
}

static void
tracer_dealloc(hm_tracer *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tracer_detach(self);
    tracer_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* Calls greenlet.<name>(*args). Needs the GIL. Returns a new reference or
   NULL with an exception set. */
static PyObject *
call_greenlet(const char *name, PyObject *arg)
{
    PyObject *module = NULL, *result = NULL;
    module = PyImport_ImportModule("greenlet");
    if (module == NULL) {
        goto error;
    }
    if (arg != NULL) {
        result = PyObject_CallMethod(module, name, "O", arg);
    }
    else {
        result = PyObject_CallMethod(module, name, NULL);
    }
error:
    Py_XDECREF(module);
    return result;
}

PyDoc_STRVAR(install_doc,
"install()\n--\n\n"
"Install this tracer with greenlet.settrace() in the calling thread,\n"
"chaining to the trace function installed before it.");

static PyObject *
tracer_install(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    if (self->installed) {
        PyErr_SetString(PyExc_RuntimeError, "this tracer is already installed");
        return NULL;
    }
    PyObject *previous = call_greenlet("settrace", (PyObject *)self);
    if (previous == NULL) {
        return NULL;
    }
    if (previous == Py_None) {
        Py_DECREF(previous);
        previous = NULL;
    }
    Py_XSETREF(self->previous, previous);
    self->installed = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(uninstall_doc,
"uninstall() -> bool\n--\n\n"
"Stop counting. If this tracer is the calling thread's trace function,\n"
"put back the previous one and return True; otherwise (a later trace\n"
"function chains to it) keep forwarding to the previous one and return\n"
"False.");

static PyObject *
tracer_uninstall(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    PyObject *now = NULL, *result = NULL;
    tracer_detach(self);
    if (!self->installed) {
        Py_RETURN_FALSE;
    }
    now = call_greenlet("gettrace", NULL);
    if (now == NULL) {
        goto error;
    }
    if (now == (PyObject *)self) {
        PyObject *previous = self->previous != NULL ? self->previous : Py_None;
        PyObject *old = call_greenlet("settrace", previous);
        if (old == NULL) {
            goto error;
        }
        Py_DECREF(old);
        Py_CLEAR(self->previous);
        self->installed = 0;
        result = Py_True;
    }
    else {
        result = Py_False;
    }
    Py_INCREF(result);
error:
    Py_XDECREF(now);
    return result;
}

PyDoc_STRVAR(detach_doc,
"detach()\n--\n\n"
"Stop counting and sampling without touching any thread's trace\n"
"function (for a stop from another thread): the tracer keeps\n"
"forwarding to the previous trace function.");

static PyObject *
tracer_detach_py(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    tracer_detach(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(start_doc,
"start()\n--\n\nPut the record in the native thread's list (starting it).");

static PyObject *
tracer_start(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    if (self->rec == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this tracer was stopped");
        return NULL;
    }
    if (hm_sampler_add(self->rec) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot start the hubmon native thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc,
"stop()\n--\n\nTake the record out of the native thread's list.");

static PyObject *
tracer_stop(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    if (self->rec != NULL) {
        hm_sampler_remove(self->rec);
    }
    Py_RETURN_NONE;
}

/* Builds a dict from the record's figures. Needs the GIL; takes the lock.
   Returns a new reference or NULL with an exception set. */
static PyObject *
record_stats(hm_record *rec, int finish)
{
    PyObject *hist = NULL, *result = NULL;
    uint64_t counts[HM_HIST_BUCKETS + 1];
    double now = hm_monotonic();

    pthread_mutex_lock(&hm_sampler_lock);
    uint64_t count = rec->mode == HM_MODE_HUB
        ? atomic_load(&rec->hub_switches) : atomic_load(&rec->switches);
    int fine = rec->mode == HM_MODE_HUB && atomic_load(&rec->hub_running);
    double longest_gap = rec->longest_gap;
    if (finish && !fine && count == rec->seen && now - rec->since_late > longest_gap) {
        /* The stretch in progress counts too (its lower bound, like the
           others). */
        longest_gap = now - rec->since_late;
    }
    uint64_t blocks = rec->blocks;
    double longest_block = rec->longest_block;
    int blocked = rec->blocked;
    double current_block = blocked ? now - rec->since : 0.0;
    double threshold = rec->threshold;
    memcpy(counts, rec->histogram, sizeof(counts));
    pthread_mutex_unlock(&hm_sampler_lock);

    if (current_block > longest_block) {
        longest_block = current_block;
    }
    hist = PyTuple_New(HM_HIST_BUCKETS + 1);
    if (hist == NULL) {
        goto error;
    }
    for (int i = 0; i <= HM_HIST_BUCKETS; i++) {
        PyObject *n = PyLong_FromUnsignedLongLong(counts[i]);
        if (n == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(hist, i, n);
    }
    result = Py_BuildValue(
        "{s:K,s:K,s:K,s:d,s:O,s:d,s:d,s:O,s:d}",
        "switches", (unsigned long long)atomic_load(&rec->switches),
        "hub_switches", (unsigned long long)atomic_load(&rec->hub_switches),
        "blocks", (unsigned long long)blocks,
        "longest_block", longest_block,
        "blocked_now", blocked ? Py_True : Py_False,
        "current_block", current_block,
        "longest_gap", longest_gap,
        "histogram_counts", hist,
        "threshold", threshold);
error:
    Py_XDECREF(hist);
    return result;
}

PyDoc_STRVAR(stats_doc,
"stats(finish=False) -> dict\n--\n\n"
"The record's figures. With finish=True the stretch without progress that\n"
"is still going on counts toward longest_gap.");

static PyObject *
tracer_stats(hm_tracer *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"finish", NULL};
    int finish = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:stats", keywords, &finish)) {
        return NULL;
    }
    if (self->rec == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this tracer was stopped");
        return NULL;
    }
    return record_stats(self->rec, finish);
}

PyDoc_STRVAR(set_threshold_doc,
"set_threshold(seconds)\n--\n\nChange the threshold.");

static PyObject *
tracer_set_threshold(hm_tracer *self, PyObject *arg)
{
    double threshold = PyFloat_AsDouble(arg);
    if (threshold == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(threshold > 0.0) || !isfinite(threshold)) {
        PyErr_Format(PyExc_ValueError,
                     "threshold must be a finite number of seconds > 0, not %R", arg);
        return NULL;
    }
    if (self->rec != NULL) {
        pthread_mutex_lock(&hm_sampler_lock);
        self->rec->threshold = threshold;
        pthread_mutex_unlock(&hm_sampler_lock);
        hm_sampler_wake();
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ignore_current_doc,
"ignore_current()\n--\n\n"
"Do not report the greenlet running now until the next switch.");

static PyObject *
tracer_ignore_current(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    hm_record *rec = self->rec;
    if (rec != NULL) {
        pthread_mutex_lock(&hm_sampler_lock);
        rec->ignoring = 1;
        rec->ignored_switches = atomic_load(&rec->switches);
        pthread_mutex_unlock(&hm_sampler_lock);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(monitor_current_doc,
"monitor_current()\n--\n\nUndo ignore_current().");

static PyObject *
tracer_monitor_current(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    hm_record *rec = self->rec;
    if (rec != NULL) {
        pthread_mutex_lock(&hm_sampler_lock);
        rec->ignoring = 0;
        pthread_mutex_unlock(&hm_sampler_lock);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_next_call_doc,
"set_next_call(when)\n--\n\n"
"Ask the native thread to call back (event 'call') at monotonic time\n"
"`when`; 0 cancels.");

static PyObject *
tracer_set_next_call(hm_tracer *self, PyObject *arg)
{
    double when = PyFloat_AsDouble(arg);
    if (when == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->rec != NULL) {
        pthread_mutex_lock(&hm_sampler_lock);
        if (!self->rec->call_pending) {
            self->rec->next_call = when;
        }
        pthread_mutex_unlock(&hm_sampler_lock);
        hm_sampler_wake();
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_gil_dump_doc,
"set_gil_dump(fd, signum)\n--\n\n"
"Where the stack dump of a GIL-holding block goes, and the signal\n"
"faulthandler listens to; signum 0 turns it off.");

static PyObject *
tracer_set_gil_dump(hm_tracer *self, PyObject *args)
{
    int fd, signum;
    if (!PyArg_ParseTuple(args, "ii:set_gil_dump", &fd, &signum)) {
        return NULL;
    }
    if (self->rec != NULL) {
        pthread_mutex_lock(&hm_sampler_lock);
        self->rec->gil_fd = fd;
        self->rec->gil_signal = signum;
        pthread_mutex_unlock(&hm_sampler_lock);
    }
    Py_RETURN_NONE;
}

static PyObject *
tracer_get_record_id(hm_tracer *self, void *closure)
{
    (void)closure;
    if (self->rec == NULL) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong((long long)self->rec->id);
}

static PyObject *
tracer_get_previous(hm_tracer *self, void *closure)
{
    (void)closure;
    PyObject *previous = self->previous != NULL ? self->previous : Py_None;
    Py_INCREF(previous);
    return previous;
}

static PyObject *
tracer_get_active(hm_tracer *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->rec != NULL);
}

static PyMethodDef tracer_methods[] = {
    {"install", (PyCFunction)tracer_install, METH_NOARGS, install_doc},
    {"uninstall", (PyCFunction)tracer_uninstall, METH_NOARGS, uninstall_doc},
    {"detach", (PyCFunction)tracer_detach_py, METH_NOARGS, detach_doc},
    {"start", (PyCFunction)tracer_start, METH_NOARGS, start_doc},
    {"stop", (PyCFunction)tracer_stop, METH_NOARGS, stop_doc},
    {"stats", (PyCFunction)(void (*)(void))tracer_stats,
     METH_VARARGS | METH_KEYWORDS, stats_doc},
    {"set_threshold", (PyCFunction)tracer_set_threshold, METH_O, set_threshold_doc},
    {"ignore_current", (PyCFunction)tracer_ignore_current, METH_NOARGS,
     ignore_current_doc},
    {"monitor_current", (PyCFunction)tracer_monitor_current, METH_NOARGS,
     monitor_current_doc},
    {"set_next_call", (PyCFunction)tracer_set_next_call, METH_O, set_next_call_doc},
    {"set_gil_dump", (PyCFunction)tracer_set_gil_dump, METH_VARARGS, set_gil_dump_doc},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef tracer_getset[] = {
    {"record_id", (getter)tracer_get_record_id, NULL,
     "The record's id, or None once detached.", NULL},
    {"previous", (getter)tracer_get_previous, NULL,
     "The trace function this one chains to, or None.", NULL},
    {"counting", (getter)tracer_get_active, NULL,
     "Whether this tracer still counts switches.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyMemberDef tracer_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(hm_tracer, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}
};

PyDoc_STRVAR(tracer_doc,
"Tracer(hub, current, threshold, *, mode='hub', report=True)\n\n"
"A greenlet trace function that counts switches for the native thread.");

static PyType_Slot tracer_slots[] = {
    {Py_tp_doc, (void *)tracer_doc},
    {Py_tp_new, tracer_new},
    {Py_tp_dealloc, tracer_dealloc},
    {Py_tp_traverse, tracer_traverse},
    {Py_tp_clear, tracer_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_methods, tracer_methods},
    {Py_tp_getset, tracer_getset},
    {Py_tp_members, tracer_members},
    {0, NULL}
};

PyType_Spec hm_tracer_spec = {
    .name = "hubmon._core.Tracer",
    .basicsize = sizeof(hm_tracer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = tracer_slots,
};

/* The do-nothing trace function: the floor that greenlet itself imposes on
   every traced switch, kept for the benchmarks. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
} hm_noop_tracer;

static PyObject *
noop_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                PyObject *kwnames)
{
    (void)callable;
    (void)args;
    (void)nargsf;
    (void)kwnames;
    Py_RETURN_NONE;
}

static PyObject *
noop_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) || PyTuple_GET_SIZE(args) > 0) {
        PyErr_SetString(PyExc_TypeError, "NoopTracer() takes no arguments");
        return NULL;
    }
    hm_noop_tracer *self = (hm_noop_tracer *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->vectorcall = noop_vectorcall;
    }
    return (PyObject *)self;
}

static void
noop_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyMemberDef noop_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(hm_noop_tracer, vectorcall),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL}
};

static PyType_Slot noop_slots[] = {
    {Py_tp_doc, (void *)"A trace function that does nothing (the benchmark floor)."},
    {Py_tp_new, noop_new},
    {Py_tp_dealloc, noop_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, noop_members},
    {0, NULL}
};

PyType_Spec hm_noop_tracer_spec = {
    .name = "hubmon._core.NoopTracer",
    .basicsize = sizeof(hm_noop_tracer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = noop_slots,
};
