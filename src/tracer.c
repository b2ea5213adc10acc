/*
 * tracer.c: a thread's greenlet trace function (the per-switch hot path).
 *
 * greenlet calls a thread's trace function as f(event, (origin, target))
 * on every switch, with tracing disabled meanwhile. hubmon installs ONE
 * ThreadTracer per thread, whatever it monitors there: the records of that
 * thread (a hub's Monitor, assert_switches scopes) sit in a small array, and
 * starting, nesting and stopping them never adds a link to the thread's
 * trace chain, from whichever thread the stop comes. Per switch and record
 * it bumps a switch counter, notes whether the target is the hub and stores
 * the target's identity (an address, never a reference); then it calls the
 * trace function that was installed before it. No allocation and no Python
 * call of its own. Two rare slow paths: the first switch away from a hub
 * while the native thread dozes wakes it (a lock and a clock read, once per
 * doze), and the first switch into a hub in a forked child starts it.
 * A ThreadTracer never raises: greenlet would drop it and inject the error
 * into the switch. When the trace function it chains to raises, it applies
 * greenlet's own rule to it instead: that function is removed from the chain
 * and its error reported once through the unraisable hook, not on every
 * switch.
 */
#include "hubmon.h"

#include "structmember.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *previous;     /* the trace function installed before, or NULL */
    hm_record **recs;       /* owned references */
    Py_ssize_t count;
    Py_ssize_t capacity;
    int installed;
    int forwarding;         /* inside the call of `previous` */
    PyObject *weakrefs;
} hm_tracer;

/* Adds one to a counter that only the traced thread writes: a relaxed
   load and store, which compile to plain moves. */
#define HM_BUMP(counter) \
    atomic_store_explicit(&(counter), \
        atomic_load_explicit(&(counter), memory_order_relaxed) + 1, \
        memory_order_relaxed)

/* Takes the pending exception: normalized, with its traceback attached, and
   cleared. Needs the GIL. Returns a new reference, or NULL when none is set.
   PyErr_Fetch is deprecated from 3.12 on, PyErr_GetRaisedException new in it. */
static PyObject *
fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL
            && PyException_SetTraceback(value, traceback) < 0) {
        PyErr_Clear();      /* the error stays reportable without it */
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* Sets `exc` (an exception instance; the reference is stolen) as the pending
   exception, or leaves none set when it is NULL. Needs the GIL. */
static void
restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc != NULL) {
        PyObject *type = (PyObject *)Py_TYPE(exc);
        Py_INCREF(type);
        PyErr_Restore(type, exc, PyException_GetTraceback(exc));
    }
#endif
}

/* Whether a call has the shape of greenlet's: f(event, (origin, target)). */
static int
called_as_greenlet_does(PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return PyVectorcall_NARGS(nargsf) == 2
        && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0)
        && PyTuple_Check(args[1]) && PyTuple_GET_SIZE(args[1]) == 2;
}

/* The error path of the forwarding in tracer_vectorcall: `previous` (a
   reference the caller holds) was called and raised. Needs the GIL and that
   error set; returns with no error set.

   hubmon never raises from its tracer, so it applies greenlet's rule for a
   trace function that raises (it is removed, and the error goes into the
   switch) without the second half: `previous` is removed from the chain and
   its error reported once through the unraisable hook, as the __cause__ of
   a RuntimeError that says so, instead of on every switch. Two cases leave
   the chain alone and report the error as it is: `previous` is no longer
   self's previous (the call changed the chain: the function now there did
   not raise), or the call is not shaped as greenlet's (a program calling
   the tracer by hand with other arguments: they, not the function, may be
   at fault). */
static void
previous_raised(hm_tracer *self, PyObject *previous, PyObject *const *args,
                size_t nargsf, PyObject *kwnames)
{
    if (self->previous != previous || !called_as_greenlet_does(args, nargsf, kwnames)) {
        PyErr_WriteUnraisable(previous);
        return;
    }
    /* The caller's reference keeps `previous` alive: no finalizer runs here. */
    Py_CLEAR(self->previous);
    PyObject *cause = fetch_exception();
    PyObject *report = NULL;
    /* The message names the error too: the default unraisable hook does not
       print the __cause__ (CPython 3.9 to 3.13). */
    PyObject *message = PyUnicode_FromFormat(
        "hubmon removed the greenlet trace function %R from the trace chain "
        "of this thread: it raised %R (greenlet removes a trace function "
        "that raises)", previous, cause != NULL ? cause : Py_None);
    if (message != NULL) {
        report = PyObject_CallOneArg(PyExc_RuntimeError, message);
        Py_DECREF(message);
    }
    if (report != NULL) {
        /* The default unraisable hook prints the report's traceback only:
           the one of the error, so that it shows the line that raised. */
        PyObject *traceback = cause != NULL ? PyException_GetTraceback(cause) : NULL;
        if (traceback != NULL) {
            if (PyException_SetTraceback(report, traceback) < 0) {
                PyErr_Clear();      /* the report stands without it */
            }
            Py_DECREF(traceback);
        }
        PyException_SetCause(report, cause);        /* steals `cause` */
    }
    else {
        /* Building the report failed (a repr that raises): report that
           error, raised while handling the one of `previous`. */
        report = fetch_exception();
        if (report != NULL) {
            PyException_SetContext(report, cause);  /* steals `cause` */
        }
        else {
            report = cause;
        }
    }
    restore_exception(report);
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(previous);
    }
}

/* The per-switch hot path. Needs the GIL (greenlet holds it). Returns a new
   reference to None or to what the previous trace function returned; never
   NULL and never with an exception set. When the previous trace function
   raises, see previous_raised(): the result is None. */
static PyObject *
tracer_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                  PyObject *kwnames)
{
    hm_tracer *self = (hm_tracer *)callable;
    if (self->count > 0 && PyVectorcall_NARGS(nargsf) == 2) {
        PyObject *pair = args[1];
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) {
            uintptr_t target = (uintptr_t)PyTuple_GET_ITEM(pair, 1);
            int away = 0, into_hub = 0;
            for (Py_ssize_t i = 0; i < self->count; i++) {
                hm_record *rec = self->recs[i];
                HM_BUMP(rec->switches);
                if (target == rec->hub) {
                    HM_BUMP(rec->hub_switches);
                    atomic_store_explicit(&rec->hub_running, 1, memory_order_relaxed);
                    into_hub = 1;
                }
                else {
                    atomic_store_explicit(&rec->hub_running, 0, memory_order_relaxed);
                    away = 1;
                }
                atomic_store_explicit(&rec->current, target, memory_order_relaxed);
            }
            /* The native thread dozes only while every hub runs: the first
               switch away from one wakes it. A relaxed load: in the rare
               race where it reads a stale 0, the doze ends at its timeout
               instead. */
            if (away && atomic_load_explicit(&hm_dozing, memory_order_relaxed)) {
                hm_sampler_poke();
            }
            if (into_hub && atomic_load_explicit(&hm_resume_pending, memory_order_relaxed)) {
                hm_sampler_resume();
            }
        }
    }
    if (self->previous != NULL && !self->forwarding) {
        /* greenlet never calls a trace function re-entrantly: being called
           again while forwarding means the chain loops back here (two
           tracers made each other's previous). Stop the loop here rather
           than recurse without end. */
        PyObject *previous = self->previous;
        Py_INCREF(previous);
        self->forwarding = 1;
        PyObject *result = PyObject_Vectorcall(previous, args, nargsf, kwnames);
        self->forwarding = 0;
        if (result == NULL) {
            previous_raised(self, previous, args, nargsf, kwnames);
            result = Py_None;
            Py_INCREF(result);
        }
        Py_DECREF(previous);
        return result;
    }
    Py_RETURN_NONE;
}

/* ThreadTracer(): a thread's trace function with no record yet. */
static PyObject *
tracer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) || PyTuple_GET_SIZE(args) > 0) {
        PyErr_SetString(PyExc_TypeError, "ThreadTracer() takes no arguments");
        return NULL;
    }
    hm_tracer *self = (hm_tracer *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->vectorcall = tracer_vectorcall;
    }
    return (PyObject *)self;
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

/* Drops every record. Needs the GIL. */
static void
tracer_drop_records(hm_tracer *self)
{
    hm_record **recs = self->recs;
    Py_ssize_t count = self->count;
    self->recs = NULL;
    self->count = self->capacity = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        hm_record_traced(recs[i], -1);
        hm_record_decref(recs[i]);
    }
    PyMem_Free(recs);
}

static void
tracer_dealloc(hm_tracer *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    tracer_drop_records(self);
    tracer_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* Calls greenlet.<name>(arg), or greenlet.<name>() when arg is NULL. Needs
   the GIL. Returns a new reference or NULL with an exception set. */
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

/* The record inside a _core.Record, or NULL with TypeError set. Needs the
   GIL. */
static hm_record *
record_of(hm_tracer *self, PyObject *obj)
{
    PyObject *module = PyType_GetModule(Py_TYPE(self));
    hm_module_state *state = module != NULL ? PyModule_GetState(module) : NULL;
    if (state == NULL || !PyObject_TypeCheck(obj, state->record_type)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "expected a hubmon._core.Record, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return ((hm_record_object *)obj)->rec;
}

/* Whether following `previous` from `start` through hubmon tracers (of
   self's type) reaches `self`: installing self on top would close a loop.
   Needs the GIL. */
static int
chain_reaches(PyObject *start, hm_tracer *self)
{
    PyObject *link = start;
    for (int depth = 0; depth < 1000 && link != NULL; depth++) {
        if (link == (PyObject *)self) {
            return 1;
        }
        if (Py_TYPE(link) != Py_TYPE(self)) {
            return 0;
        }
        link = ((hm_tracer *)link)->previous;
    }
    return link != NULL;
}

PyDoc_STRVAR(install_doc,
"install() -> bool\n--\n\n"
"Make this the calling thread's trace function, chaining to the one\n"
"installed before, unless it is installed already. Returns whether it\n"
"installed itself now. Once installed and replaced by a later trace\n"
"function, it never installs itself again on top (the later function may\n"
"chain to it: that would make a cycle); it does after settrace(None).\n"
"hubmon keeps only a weak reference to a thread's tracer, so one that no\n"
"chain holds any more is gone, and a new one is installed instead.");

static PyObject *
tracer_install(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    PyObject *now = NULL, *old = NULL, *result = NULL;
    now = call_greenlet("gettrace", NULL);
    if (now == NULL) {
        goto error;
    }
    if (now == (PyObject *)self || (self->installed && now != Py_None)
            || chain_reaches(now, self)) {
        result = Py_False;
        Py_INCREF(result);
        goto error;
    }
    old = call_greenlet("settrace", (PyObject *)self);
    if (old == NULL) {
        goto error;
    }
    if (old == (PyObject *)self || old == Py_None) {
        Py_CLEAR(self->previous);
    }
    else {
        Py_INCREF(old);
        Py_XSETREF(self->previous, old);
    }
    self->installed = 1;
    result = Py_True;
    Py_INCREF(result);
error:
    Py_XDECREF(now);
    Py_XDECREF(old);
    return result;
}

PyDoc_STRVAR(uninstall_doc,
"uninstall() -> bool\n--\n\n"
"If this is the calling thread's trace function, put back the previous\n"
"one and return True; otherwise (a later trace function chains to it)\n"
"leave it in place, forwarding to the previous one, and return False.");

static PyObject *
tracer_uninstall(hm_tracer *self, PyObject *unused)
{
    (void)unused;
    PyObject *now = NULL, *old = NULL, *result = NULL;
    now = call_greenlet("gettrace", NULL);
    if (now == NULL) {
        goto error;
    }
    if (now != (PyObject *)self) {
        if (now == Py_None) {
            self->installed = 0;     /* someone cleared the chain */
            Py_CLEAR(self->previous);
        }
        result = Py_False;
        Py_INCREF(result);
        goto error;
    }
    old = call_greenlet("settrace", self->previous != NULL ? self->previous : Py_None);
    if (old == NULL) {
        goto error;
    }
    Py_CLEAR(self->previous);
    self->installed = 0;
    result = Py_True;
    Py_INCREF(result);
error:
    Py_XDECREF(now);
    Py_XDECREF(old);
    return result;
}

PyDoc_STRVAR(add_doc,
"add(record)\n--\n\nCount this thread's switches into `record` too.");

static PyObject *
tracer_add(hm_tracer *self, PyObject *obj)
{
    hm_record *rec = record_of(self, obj);
    if (rec == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->count; i++) {
        if (self->recs[i] == rec) {
            Py_RETURN_NONE;
        }
    }
    if (self->count == self->capacity) {
        Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 4;
        hm_record **recs = PyMem_Realloc(self->recs, (size_t)capacity * sizeof(hm_record *));
        if (recs == NULL) {
            return PyErr_NoMemory();
        }
        self->recs = recs;
        self->capacity = capacity;
    }
    hm_record_incref(rec);
    hm_record_traced(rec, +1);
    self->recs[self->count++] = rec;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(remove_doc,
"remove(record) -> bool\n--\n\n"
"Stop counting into `record` (from any thread). Returns whether it was\n"
"counted here.");

static PyObject *
tracer_remove(hm_tracer *self, PyObject *obj)
{
    hm_record *rec = record_of(self, obj);
    if (rec == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->count; i++) {
        if (self->recs[i] == rec) {
            memmove(&self->recs[i], &self->recs[i + 1],
                    (size_t)(self->count - i - 1) * sizeof(hm_record *));
            self->count--;
            hm_record_traced(rec, -1);
            hm_record_decref(rec);
            Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
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
tracer_get_count(hm_tracer *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->count);
}

static PyObject *
tracer_get_installed(hm_tracer *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->installed);
}

static PyMethodDef tracer_methods[] = {
    {"install", (PyCFunction)tracer_install, METH_NOARGS, install_doc},
    {"uninstall", (PyCFunction)tracer_uninstall, METH_NOARGS, uninstall_doc},
    {"add", (PyCFunction)tracer_add, METH_O, add_doc},
    {"remove", (PyCFunction)tracer_remove, METH_O, remove_doc},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef tracer_getset[] = {
    {"previous", (getter)tracer_get_previous, NULL,
     "The trace function this one chains to, or None (also once that one\n"
     "raised on a switch: it is removed from the chain).", NULL},
    {"record_count", (getter)tracer_get_count, NULL,
     "How many records this tracer counts into.", NULL},
    {"installed", (getter)tracer_get_installed, NULL,
     "Whether install() put it in its thread's chain (and it was not taken out).", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyMemberDef tracer_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(hm_tracer, vectorcall), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(hm_tracer, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}
};

PyDoc_STRVAR(tracer_doc,
"ThreadTracer()\n\n"
"A thread's greenlet trace function: counts switches into its records.");

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
    .name = "hubmon._core.ThreadTracer",
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
