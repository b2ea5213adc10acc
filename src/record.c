/*
 * record.c: _core.Record, the Python handle of one monitored scope.
 *
 * A Record is created in the thread it watches, added to that thread's
 * ThreadTracer (thread_tracer.c) to be counted, and started to be sampled
 * by the native thread (sampler.c). It holds the identities of the hub and
 * of the running greenlet, never references to them.
 *
 * Runs holding the GIL, in the program's threads. Calls go one way: from
 * here into sampler.c (which owns the record, its lock and its lifetime).
 */
#include "hubmon.h"

#include <math.h>
#include <string.h>

/* Parses a finite number of seconds (a threshold, a monotonic time): > 0,
   or >= 0 when `zero_ok`. Needs the GIL. Returns 0 and sets *out, or -1
   with a TypeError or ValueError naming `what`. */
static int
parse_seconds(PyObject *value, const char *what, int zero_ok, double *out)
{
    const char *bound = zero_ok ? ">= 0" : "> 0";
    if (PyBool_Check(value) || !(PyFloat_Check(value) || PyLong_Check(value))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number of seconds, not %.100s",
                     what, Py_TYPE(value)->tp_name);
        return -1;
    }
    double seconds = PyFloat_AsDouble(value);
    if (seconds == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        seconds = HUGE_VAL;     /* reported below, like infinity */
    }
    if (!(zero_ok ? seconds >= 0.0 : seconds > 0.0) || !isfinite(seconds)) {
        PyErr_Format(PyExc_ValueError, "%s must be a finite number of seconds %s, not %R",
                     what, bound, value);
        return -1;
    }
    *out = seconds;
    return 0;
}

/* Record(hub, current, threshold, *, mode="hub", report=True). `hub` is the
   hub greenlet (or None, for mode "any"), `current` the greenlet running
   now; only their identities are kept. */
static PyObject *
record_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"hub", "current", "threshold", "mode", "report", NULL};
    PyObject *hub = NULL, *current = NULL, *threshold_obj = NULL, *mode_obj = NULL;
    int report = 1;
    double threshold;
    int mode;
    hm_record_object *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|$Up:Record", keywords,
                                     &hub, &current, &threshold_obj, &mode_obj,
                                     &report)) {
        goto error;
    }
    if (parse_seconds(threshold_obj, "threshold", 0, &threshold) < 0) {
        goto error;
    }
    if (mode_obj == NULL || PyUnicode_CompareWithASCIIString(mode_obj, "hub") == 0) {
        mode = HM_MODE_HUB;
    }
    else if (PyUnicode_CompareWithASCIIString(mode_obj, "any") == 0) {
        mode = HM_MODE_ANY;
    }
    else {
        PyErr_Format(PyExc_ValueError, "mode must be 'hub' or 'any', not %R", mode_obj);
        goto error;
    }
    if (mode == HM_MODE_HUB && hub == Py_None) {
        PyErr_SetString(PyExc_TypeError, "mode 'hub' needs a hub greenlet, not None");
        goto error;
    }
    self = (hm_record_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
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

static void
record_dealloc(hm_record_object *self)
{
    PyTypeObject *type = Py_TYPE(self);
    hm_record *rec = self->rec;
    if (rec != NULL) {
        self->rec = NULL;
        hm_sampler_remove(rec);
        hm_record_decref(rec);
    }
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

PyDoc_STRVAR(start_doc,
"start()\n--\n\n"
"Have the native thread sample this record (starting the thread).\n"
"Raises RuntimeError when the thread cannot start or hubmon has shut down.");

static PyObject *
record_start(hm_record_object *self, PyObject *unused)
{
    (void)unused;
    if (hm_sampler_add(self->rec) != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        hm_sampler_is_shut_down()
                        ? "hubmon has shut down: the interpreter is exiting"
                        : "cannot start the hubmon native thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc,
"stop()\n--\n\nStop sampling this record (from any thread).");

static PyObject *
record_stop(hm_record_object *self, PyObject *unused)
{
    (void)unused;
    hm_sampler_remove(self->rec);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stats_doc,
"stats(finish=False) -> dict\n--\n\n"
"The record's figures. With finish=True the stretch without progress that\n"
"is still going on counts toward longest_gap.");

static PyObject *
record_stats(hm_record_object *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"finish", NULL};
    int finish = 0;
    PyObject *hist = NULL, *result = NULL;
    hm_record_figures fig;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:stats", keywords, &finish)) {
        goto error;
    }
    hm_record_figures_get(self->rec, finish, &fig);
    hist = PyTuple_New(HM_HIST_BUCKETS + 1);
    if (hist == NULL) {
        goto error;
    }
    for (int i = 0; i <= HM_HIST_BUCKETS; i++) {
        PyObject *n = PyLong_FromUnsignedLongLong(fig.histogram[i]);
        if (n == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(hist, i, n);
    }
    result = Py_BuildValue(
        "{s:K,s:K,s:K,s:d,s:O,s:d,s:d,s:O,s:d}",
        "switches", (unsigned long long)fig.switches,
        "hub_switches", (unsigned long long)fig.hub_switches,
        "blocks", (unsigned long long)fig.blocks,
        "longest_block", fig.longest_block,
        "blocked_now", fig.blocked_now ? Py_True : Py_False,
        "current_block", fig.current_block,
        "longest_gap", fig.longest_gap,
        "histogram_counts", hist,
        "threshold", fig.threshold);
error:
    Py_XDECREF(hist);
    return result;
}

PyDoc_STRVAR(set_threshold_doc,
"set_threshold(seconds)\n--\n\n"
"Change the threshold: a finite number of seconds > 0 (else ValueError or\n"
"TypeError).");

static PyObject *
record_set_threshold(hm_record_object *self, PyObject *arg)
{
    double threshold;
    if (parse_seconds(arg, "threshold", 0, &threshold) < 0) {
        return NULL;
    }
    hm_record_threshold_set(self->rec, threshold);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ignore_current_doc,
"ignore_current()\n--\n\n"
"Do not report the greenlet running now until the next switch.");

static PyObject *
record_ignore_current(hm_record_object *self, PyObject *unused)
{
    (void)unused;
    hm_record_ignore_set(self->rec, 1);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(monitor_current_doc,
"monitor_current()\n--\n\nUndo ignore_current().");

static PyObject *
record_monitor_current(hm_record_object *self, PyObject *unused)
{
    (void)unused;
    hm_record_ignore_set(self->rec, 0);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_next_call_doc,
"set_next_call(when)\n--\n\n"
"Ask the native thread for a CALL event at monotonic time `when` (seconds);\n"
"0 cancels. Ignored while a CALL event is being handled.");

static PyObject *
record_set_next_call(hm_record_object *self, PyObject *arg)
{
    double when;
    if (parse_seconds(arg, "when", 1, &when) < 0) {
        return NULL;
    }
    hm_record_next_call_set(self->rec, when);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(call_done_doc,
"call_done(next_call)\n--\n\n"
"Acknowledge a CALL event: the functions are next due at monotonic time\n"
"`next_call` (0 = none).");

static PyObject *
record_call_done(hm_record_object *self, PyObject *arg)
{
    double when;
    if (parse_seconds(arg, "next_call", 1, &when) < 0) {
        return NULL;
    }
    hm_record_call_done(self->rec, when);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_gil_dump_doc,
"set_gil_dump(on)\n--\n\n"
"Whether a block of this record arms the GIL stack dump.");

static PyObject *
record_set_gil_dump(hm_record_object *self, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    hm_record_gil_dump_set(self->rec, on);
    Py_RETURN_NONE;
}

static PyObject *
record_get_id(hm_record_object *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong((long long)self->rec->id);
}

static PyObject *
record_get_switches(hm_record_object *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(
        (unsigned long long)atomic_load(&self->rec->switches));
}

static PyObject *
record_get_thread_ident(hm_record_object *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLong(self->rec->thread_ident);
}

static PyObject *
record_get_sampled(hm_record_object *self, void *closure)
{
    (void)closure;
    pthread_mutex_lock(&hm_sampler_lock);
    int active = self->rec->active;
    pthread_mutex_unlock(&hm_sampler_lock);
    return PyBool_FromLong(active);
}

PyDoc_STRVAR(loop_iteration_doc,
"loop_iteration()\n--\n\n"
"Counts one iteration of the hub's event loop: the callback of a prepare\n"
"watcher of that loop, called before each wait for events, in the hub's\n"
"thread. Without it the record never judges blocks inside the hub itself.");

static PyObject *
record_loop_iteration(hm_record_object *self, PyObject *unused)
{
    (void)unused;
    hm_record *rec = self->rec;
    /* Single writer (the hub's thread): a relaxed load-add-store. */
    atomic_store_explicit(&rec->loop_iterations,
                          atomic_load_explicit(&rec->loop_iterations, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&rec->loop_counted, 1, memory_order_relaxed);
    Py_RETURN_NONE;
}

static PyMethodDef record_methods[] = {
    {"loop_iteration", (PyCFunction)record_loop_iteration, METH_NOARGS, loop_iteration_doc},
    {"start", (PyCFunction)record_start, METH_NOARGS, start_doc},
    {"stop", (PyCFunction)record_stop, METH_NOARGS, stop_doc},
    {"stats", (PyCFunction)(void (*)(void))record_stats,
     METH_VARARGS | METH_KEYWORDS, stats_doc},
    {"set_threshold", (PyCFunction)record_set_threshold, METH_O, set_threshold_doc},
    {"ignore_current", (PyCFunction)record_ignore_current, METH_NOARGS,
     ignore_current_doc},
    {"monitor_current", (PyCFunction)record_monitor_current, METH_NOARGS,
     monitor_current_doc},
    {"set_next_call", (PyCFunction)record_set_next_call, METH_O, set_next_call_doc},
    {"call_done", (PyCFunction)record_call_done, METH_O, call_done_doc},
    {"set_gil_dump", (PyCFunction)record_set_gil_dump, METH_O, set_gil_dump_doc},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef record_getset[] = {
    {"id", (getter)record_get_id, NULL, "The record's id (the events' key).", NULL},
    {"switches", (getter)record_get_switches, NULL,
     "Switches counted so far in the record's thread.", NULL},
    {"thread_ident", (getter)record_get_thread_ident, NULL,
     "The identifier of the thread the record watches.", NULL},
    {"sampled", (getter)record_get_sampled, NULL,
     "Whether the native thread samples this record.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

PyDoc_STRVAR(record_doc,
"Record(hub, current, threshold, *, mode='hub', report=True)\n\n"
"One monitored scope of the calling thread: its switch counters and\n"
"blocking figures, sampled by the native thread once started.");

static PyType_Slot record_slots[] = {
    {Py_tp_doc, (void *)record_doc},
    {Py_tp_new, record_new},
    {Py_tp_dealloc, record_dealloc},
    {Py_tp_methods, record_methods},
    {Py_tp_getset, record_getset},
    {0, NULL}
};

PyType_Spec hm_record_spec = {
    .name = "hubmon._core.Record",
    .basicsize = sizeof(hm_record_object),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = record_slots,
};
