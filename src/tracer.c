/*
 * tracer.c: the per-switch hot path, and nothing else.
 *
 * greenlet calls a thread's trace function as f(event, (origin, target))
 * on every switch, holding the GIL, with tracing disabled meanwhile.
 * hm_tracer_call() is that function for hubmon's ThreadTracer (the type is
 * in thread_tracer.c): per switch and record of the thread it bumps a switch
 * counter, notes whether the target is the hub and stores the target's
 * identity (an address, never a reference) in the record's atomics, which
 * the native thread (sampler.c) reads without the GIL; then it calls the
 * trace function that was installed before it. No allocation, no lock, no
 * clock read and no Python call of its own on the common path.
 *
 * Three rare slow paths do more, each at most once per state change, never
 * per switch. The first switch that ends a stretch without progress that a
 * sample saw (one longer than a sampling period) reads the monotonic clock
 * once, so that the stretch has an exact end (see stamp_armed in hm_record).
 * Two call into sampler.c: the first switch away from a hub while the
 * native thread dozes (every hub idle) wakes it, which takes
 * hm_sampler_lock and reads the monotonic clock once per doze
 * (hm_sampler_poke); and the first switch into a hub in a forked child
 * restarts the native thread there (hm_sampler_resume).
 *
 * The tracer never raises: greenlet would drop it and inject the error into
 * the switch. When the trace function it chains to raises, it applies
 * greenlet's own rule to that function instead: it is removed from the
 * chain and its error reported once through the unraisable hook, not on
 * every switch.
 *
 * Calls go one way: from here into sampler.c's two wake-up functions only.
 */
#include "hubmon.h"


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

/* The error path of the forwarding in hm_tracer_call: `previous` (a
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
PyObject *
hm_tracer_call(PyObject *callable, PyObject *const *args, size_t nargsf,
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
                /* The end of a stretch a sample saw: rare, see hm_record. */
                if (atomic_load_explicit(&rec->stamp_armed, memory_order_relaxed)
                        && (rec->mode == HM_MODE_ANY || target == rec->hub)) {
                    atomic_store_explicit(&rec->stamp_armed, 0, memory_order_relaxed);
                    atomic_store_explicit(&rec->progress_at, hm_clock_now(),
                                          memory_order_relaxed);
                    /* Release: a sampler that reads this count reads the
                       time stored before it. */
                    atomic_store_explicit(&rec->stamp_count,
                        atomic_load_explicit(rec->mode == HM_MODE_ANY
                                             ? &rec->switches : &rec->hub_switches,
                                             memory_order_relaxed),
                        memory_order_release);
                }
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
