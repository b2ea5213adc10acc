/*
 * thread_tracer.c: _core.ThreadTracer, the Python type of a thread's trace
 * function, and _core.NoopTracer, the do-nothing baseline the benchmarks
 * measure the per-switch cost against.
 *
 * hubmon installs ONE ThreadTracer per thread, whatever it monitors there
 * (hubmon/_tracing.py): the records of that thread (a hub's Monitor,
 * assert_switches scopes) sit in its small array, and adding, nesting and
 * removing them never adds a link to the thread's trace chain, from
 * whichever thread the removal comes. Everything here runs holding the GIL,
 * in the program's threads, at start and stop only; the per-switch call is
 * hm_tracer_call() in tracer.c. The records themselves belong to sampler.c
 * (their lock and lifetime); the tracer holds one reference to each record
 * it counts for (hm_record_tracers_add tells the sampler).
 */
#include "hubmon.h"

#include "structmember.h"

#include <string.h>

/* A new object of one of this file's types, which take no arguments, with
   `call` stored as its vectorcall at `offset`. Needs the GIL. Returns a new
   reference, or NULL with TypeError set when arguments were given (or
   MemoryError). */
static PyObject *
new_trace_function(PyTypeObject *type, PyObject *args, PyObject *kwargs,
                   size_t offset, vectorcallfunc call)
{
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) || PyTuple_GET_SIZE(args) > 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", type->tp_name);
        return NULL;
    }
    PyObject *self = type->tp_alloc(type, 0);
    if (self != NULL) {
        *(vectorcallfunc *)((char *)self + offset) = call;
    }
    return self;
}

/* ThreadTracer(): a thread's trace function with no record yet. */
static PyObject *
tracer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    return new_trace_function(type, args, kwargs, offsetof(hm_tracer, vectorcall),
                              hm_tracer_call);
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
        hm_record_tracers_add(recs[i], -1);
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

/* Calls greenlet's gettrace() (`arg` NULL) or settrace(arg), as Python
   handed them to _core.set_trace_functions(). Needs the GIL. Returns a new
   reference, or NULL with an exception set. */
static PyObject *
call_greenlet(hm_tracer *self, PyObject *arg)
{
    PyObject *module = PyType_GetModule(Py_TYPE(self));
    hm_module_state *state = module != NULL ? PyModule_GetState(module) : NULL;
    if (state == NULL) {
        return NULL;
    }
    PyObject *function = arg == NULL ? state->gettrace : state->settrace;
    if (function == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "hubmon._core.set_trace_functions() was not called");
        return NULL;
    }
    return arg == NULL ? PyObject_CallNoArgs(function) : PyObject_CallOneArg(function, arg);
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
    now = call_greenlet(self, NULL);
    if (now == NULL) {
        goto error;
    }
    if (now == (PyObject *)self || (self->installed && now != Py_None)
            || chain_reaches(now, self)) {
        result = Py_False;
        Py_INCREF(result);
        goto error;
    }
    old = call_greenlet(self, (PyObject *)self);
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
    now = call_greenlet(self, NULL);
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
    old = call_greenlet(self, self->previous != NULL ? self->previous : Py_None);
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
    hm_record_tracers_add(rec, +1);
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
            hm_record_tracers_add(rec, -1);
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
    return new_trace_function(type, args, kwargs, offsetof(hm_noop_tracer, vectorcall),
                              noop_vectorcall);
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
