/*
 * module.c: hubmon._core's initialisation (multi-phase), its functions,
 * and the process hooks (fork).
 *
 * Runs holding the GIL, in the program's threads. Calls go one way: from
 * here into sampler.c and callbacks.c. Python hands C its event handler
 * here, once, when the package initialises (_core.set_event_handler, from
 * hubmon/_lifecycle.py); C never looks Python up by module and name.
 *
 * Exit: hubmon/_lifecycle.py calls _core.shutdown from an atexit hook, which
 * stops and joins the native thread for good before the interpreter
 * finalizes.
 * Fork: a pthread_atfork handler keeps hm_sampler_lock consistent and marks
 * the native thread gone in the child; os.register_at_fork calls
 * _core.after_fork_child, which keeps the records of the thread that forked;
 * the native thread restarts when the child's hub runs.
 * Sub-interpreters are not supported: the native thread belongs to the main
 * interpreter.
 */
#include "hubmon.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>

PyDoc_STRVAR(shutdown_doc,
"shutdown()\n--\n\n"
"Stop and join the native thread for good: hubmon/__init__.py registers it\n"
"with atexit, so no thread asks for the GIL while the interpreter\n"
"finalizes. Safe to call more than once; no monitor starts afterwards.");

static PyObject *
core_shutdown(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    /* A native thread that hands events over may be waiting for the GIL:
       only then is it released while the thread ends. */
    if (hm_sampler_stop_for_good()) {
        Py_BEGIN_ALLOW_THREADS
        hm_sampler_join_for_good();
        Py_END_ALLOW_THREADS
    }
    else {
        hm_sampler_join_for_good();
    }
    hm_callback_handler_clear();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(after_fork_child_doc,
"after_fork_child()\n--\n\n"
"In a forked child: keep the records of the calling thread; the native\n"
"thread restarts at the child's first switch into a hub.");

static PyObject *
core_after_fork_child(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    hm_sampler_child_reinit(PyThread_get_thread_ident());
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_event_handler_doc,
"set_event_handler(handler)\n--\n\n"
"The callable the native thread calls, holding the GIL, for each event:\n"
"handler(kind, record_id, value, current, gil_wait, switches). It answers\n"
"False to reject a blocked event that the evidence contradicts.");

static PyObject *
core_set_event_handler(PyObject *module, PyObject *handler)
{
    (void)module;
    if (hm_callback_handler_set(handler) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sampler_running_doc,
"sampler_running() -> bool\n--\n\nWhether the native thread exists.");

static PyObject *
core_sampler_running(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(hm_sampler_is_running());
}

PyDoc_STRVAR(sampler_dispatching_doc,
"sampler_dispatching() -> int\n--\n\n"
"How many events the native thread has decided and not yet handed to\n"
"Python (it may be waiting for the GIL), plus the ends of reported blocks\n"
"its next sample will hand over: 0 when none.");

static PyObject *
core_sampler_dispatching(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    /* The lock order (the GIL, then hubmon's lock) allows this. */
    return PyLong_FromLong(hm_sampler_dispatching_get());
}

PyDoc_STRVAR(sampler_native_id_doc,
"sampler_native_id() -> int\n--\n\n"
"The kernel thread id of the native thread, or 0 when it does not run.");

static PyObject *
core_sampler_native_id(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromLong(hm_sampler_native_id_get());
}

PyDoc_STRVAR(sampler_period_doc,
"sampler_period() -> float\n--\n\nSeconds between two samples now.");

static PyObject *
core_sampler_period(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyFloat_FromDouble(hm_sampler_period_get());
}

PyDoc_STRVAR(set_memory_watch_doc,
"set_memory_watch(limit_bytes, period)\n--\n\n"
"Watch the process's memory every `period` seconds (finite, > 0); a limit\n"
"of 0 turns it off. ValueError for other values.");

static PyObject *
core_set_memory_watch(PyObject *module, PyObject *args)
{
    (void)module;
    double limit, period;
    if (!PyArg_ParseTuple(args, "dd:set_memory_watch", &limit, &period)) {
        return NULL;
    }
    if (!(limit >= 0) || !isfinite(limit) || !(period > 0) || !isfinite(period)) {
        PyErr_Format(PyExc_ValueError,
                     "limit must be finite and >= 0 and period finite and > 0, not %R", args);
        return NULL;
    }
    if (limit > 0 && hm_sampler_start() != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot start the hubmon native thread");
        return NULL;
    }
    hm_sampler_memory_set(limit, period);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(memory_done_doc,
"memory_done(exceeded)\n--\n\n"
"Acknowledge a memory event: 1 over the limit, 0 under it, -1 unknown.");

static PyObject *
core_memory_done(PyObject *module, PyObject *arg)
{
    (void)module;
    /* An integer through __index__ only: Python 3.9's PyLong_AsLongAndOverflow
       would also take a float (through __int__). */
    PyObject *index = PyNumber_Index(arg);
    if (index == NULL) {
        return NULL;
    }
    int overflow = 0;
    long exceeded = PyLong_AsLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (exceeded == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || exceeded < -1 || exceeded > 1) {
        PyErr_Format(PyExc_ValueError, "exceeded must be -1, 0 or 1, not %R", arg);
        return NULL;
    }
    hm_sampler_memory_done((int)exceeded);
    Py_RETURN_NONE;
}

/* Parses a signal number from 1 to NSIG - 1. Needs the GIL. Returns it, or
   -1 with an exception set. */
static int
parse_signal(PyObject *arg)
{
    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "a signal number must be an int, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return -1;
    }
    int overflow = 0;
    long signum = PyLong_AsLongAndOverflow(arg, &overflow);
    if (signum == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || signum < 1 || signum >= NSIG) {
        PyErr_Format(PyExc_ValueError, "signal number must be from 1 to %d, not %R",
                     NSIG - 1, arg);
        return -1;
    }
    return (int)signum;
}

PyDoc_STRVAR(install_gil_handler_doc,
"install_gil_handler(signum)\n--\n\n"
"Put hubmon's header writer in front of faulthandler's handler of signum.");

static PyObject *
core_install_gil_handler(PyObject *module, PyObject *arg)
{
    (void)module;
    int signum = parse_signal(arg);
    if (signum < 0) {
        return NULL;
    }
    if (hm_gil_handler_install(signum) != 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(uninstall_gil_handler_doc,
"uninstall_gil_handler()\n--\n\n"
"Take hubmon's handler off its signal (putting back the one it was in\n"
"front of) if it is still there; hubmon then uses no signal.");

static PyObject *
core_uninstall_gil_handler(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    hm_gil_handler_uninstall();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(signal_disposition_doc,
"signal_disposition(signum) -> str\n--\n\n"
"What is installed for signum: 'default', 'ignore', 'hubmon' or 'other'.");

static PyObject *
core_signal_disposition(PyObject *module, PyObject *arg)
{
    (void)module;
    static const char *names[] = {"default", "ignore", "hubmon", "other"};
    int signum = parse_signal(arg);
    if (signum < 0) {
        return NULL;
    }
    int kind = hm_signal_disposition_get(signum);
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError, "%d is not a signal here", signum);
        return NULL;
    }
    return PyUnicode_FromString(names[kind]);
}

PyDoc_STRVAR(gil_dump_enable_doc,
"gil_dump_enable(fd) -> int\n--\n\n"
"Turn the GIL stack dump on, writing into a duplicate of fd that hubmon\n"
"owns; returns the duplicate (for faulthandler.register).");

static PyObject *
core_gil_dump_enable(PyObject *module, PyObject *arg)
{
    (void)module;
    int overflow = 0;
    long fd = PyLong_Check(arg) && !PyBool_Check(arg)
        ? PyLong_AsLongAndOverflow(arg, &overflow) : -2;
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "fd must be a file descriptor (an int >= 0), not %R",
                     arg);
        return NULL;
    }
    int copy = hm_gil_dump_enable((int)fd);
    if (copy < 0) {
        return NULL;
    }
    return PyLong_FromLong(copy);
}

PyDoc_STRVAR(gil_dump_disable_doc,
"gil_dump_disable()\n--\n\n"
"Turn the GIL stack dump off and close hubmon's duplicate descriptor.");

static PyObject *
core_gil_dump_disable(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    hm_gil_dump_disable();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(name_this_thread_doc,
"name_this_thread(name)\n--\n\n"
"Give the calling OS thread a name (at most 15 bytes kept), as seen in\n"
"/proc/self/task/*/comm and by debuggers. Does nothing where unsupported.");

static PyObject *
core_name_this_thread(PyObject *module, PyObject *arg)
{
    (void)module;
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL) {
        return NULL;
    }
#if defined(__linux__) && defined(_GNU_SOURCE)
    char shortened[16];
    snprintf(shortened, sizeof(shortened), "%s", name);
    pthread_setname_np(pthread_self(), shortened);
#endif
    Py_RETURN_NONE;
}

PyDoc_STRVAR(gil_dump_lost_doc,
"gil_dump_lost() -> bool\n--\n\n"
"Whether a GIL stack dump was skipped, since the last call, because the\n"
"signal's handler was no longer hubmon's.");

static PyObject *
core_gil_dump_lost(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(hm_gil_dump_is_lost());
}

PyDoc_STRVAR(monotonic_doc,
"monotonic() -> float\n--\n\nThe native thread's clock (CLOCK_MONOTONIC).");

static PyObject *
core_monotonic(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyFloat_FromDouble(hm_clock_now());
}

PyDoc_STRVAR(gc_callback_doc,
"gc_callback(phase, info)\n--\n\n"
"For gc.callbacks: tells the native thread that a garbage-collection pass\n"
"starts or stops in this thread, so that a blockage it causes is named.");

/* gc.callbacks calls it twice per pass, holding the GIL: it only stores two
   atomics. Never raises for what the collector passes. */
static PyObject *
core_gc_callback(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "gc_callback() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    int started = PyUnicode_Check(args[0])
        && PyUnicode_CompareWithASCIIString(args[0], "start") == 0;
    int generation = -1;
    if (PyDict_Check(args[1])) {
        PyObject *value = PyDict_GetItemString(args[1], "generation");
        if (value != NULL && PyLong_Check(value)) {
            generation = (int)PyLong_AsLong(value);
            if (generation == -1 && PyErr_Occurred()) {
                PyErr_Clear();
            }
        }
    }
    hm_gc_phase_set(started, generation);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(histogram_bounds_doc,
"histogram_bounds() -> tuple[float, ...]\n--\n\n"
"Upper bounds of the blocking histogram's buckets, in seconds.");

static PyObject *
core_histogram_bounds(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyObject *bounds = PyTuple_New(HM_HIST_BUCKETS);
    if (bounds == NULL) {
        return NULL;
    }
    for (int i = 0; i < HM_HIST_BUCKETS; i++) {
        PyObject *value = PyFloat_FromDouble(hm_hist_bounds_ms[i] / 1000.0);
        if (value == NULL) {
            Py_DECREF(bounds);
            return NULL;
        }
        PyTuple_SET_ITEM(bounds, i, value);
    }
    return bounds;
}

PyDoc_STRVAR(kernel_view_doc,
"kernel_view(tid) -> tuple[str, str, bool, int, str]\n--\n\n"
"What the kernel says thread `tid` (a native id) of this process is doing\n"
"now, as the native thread sees it: (kind, detail, waits_for_events,\n"
"syscall, state). kind is 'unknown', 'cpu', 'sleep', 'io' or 'lock';\n"
"syscall is -1 when not in one, -2 when unknown; state is the letter of\n"
"/proc/.../stat, or '' when unknown. A thread that cannot be read gives\n"
"'unknown' and a detail that says why. For tests.");

static PyObject *
core_kernel_view(PyObject *module, PyObject *arg)
{
    (void)module;
    long tid = PyLong_AsLong(arg);
    if (tid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    hm_kernel_view view;
    /* The native thread reads it without the GIL: so does this. */
    Py_BEGIN_ALLOW_THREADS
    hm_kernel_view_read(tid, &view);
    Py_END_ALLOW_THREADS
    int kind = view.kind >= 0 && view.kind < 7 ? view.kind : HM_CAUSE_UNKNOWN;
    char state[2] = {view.state, '\0'};
    return Py_BuildValue("(ssNls)", hm_cause_names[kind], view.detail,
                         PyBool_FromLong(view.waits_for_events), view.syscall, state);
}

PyDoc_STRVAR(set_trace_functions_doc,
"set_trace_functions(gettrace, settrace)\n--\n\n"
"greenlet.gettrace and greenlet.settrace, handed over once when the package\n"
"initialises: ThreadTracer.install() and uninstall() call them. C never\n"
"looks Python up by module and attribute name.");

static PyObject *
core_set_trace_functions(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "set_trace_functions() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 2; i++) {
        if (!PyCallable_Check(args[i])) {
            PyErr_Format(PyExc_TypeError,
                         "set_trace_functions() needs callables, not %.100s",
                         Py_TYPE(args[i])->tp_name);
            return NULL;
        }
    }
    hm_module_state *state = PyModule_GetState(module);
    Py_INCREF(args[0]);
    Py_XSETREF(state->gettrace, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(state->settrace, args[1]);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_trace_functions", (PyCFunction)(void (*)(void))core_set_trace_functions,
     METH_FASTCALL, set_trace_functions_doc},
    {"shutdown", core_shutdown, METH_NOARGS, shutdown_doc},
    {"after_fork_child", core_after_fork_child, METH_NOARGS, after_fork_child_doc},
    {"set_event_handler", core_set_event_handler, METH_O, set_event_handler_doc},
    {"sampler_running", core_sampler_running, METH_NOARGS, sampler_running_doc},
    {"sampler_dispatching", core_sampler_dispatching, METH_NOARGS, sampler_dispatching_doc},
    {"sampler_native_id", core_sampler_native_id, METH_NOARGS, sampler_native_id_doc},
    {"sampler_period", core_sampler_period, METH_NOARGS, sampler_period_doc},
    {"set_memory_watch", core_set_memory_watch, METH_VARARGS, set_memory_watch_doc},
    {"memory_done", core_memory_done, METH_O, memory_done_doc},
    {"install_gil_handler", core_install_gil_handler, METH_O, install_gil_handler_doc},
    {"uninstall_gil_handler", core_uninstall_gil_handler, METH_NOARGS,
     uninstall_gil_handler_doc},
    {"signal_disposition", core_signal_disposition, METH_O, signal_disposition_doc},
    {"gil_dump_enable", core_gil_dump_enable, METH_O, gil_dump_enable_doc},
    {"gil_dump_disable", core_gil_dump_disable, METH_NOARGS, gil_dump_disable_doc},
    {"name_this_thread", core_name_this_thread, METH_O, name_this_thread_doc},
    {"gil_dump_lost", core_gil_dump_lost, METH_NOARGS, gil_dump_lost_doc},
    {"monotonic", core_monotonic, METH_NOARGS, monotonic_doc},
    {"histogram_bounds", core_histogram_bounds, METH_NOARGS, histogram_bounds_doc},
    {"gc_callback", (PyCFunction)(void (*)(void))core_gc_callback, METH_FASTCALL,
     gc_callback_doc},
    {"kernel_view", core_kernel_view, METH_O, kernel_view_doc},
    {NULL, NULL, 0, NULL}
};

/* pthread_atfork can register a handler but never remove one: do it once per
   process, whatever happens to the module object. */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_result;

static void
register_atfork(void)
{
    atfork_result = pthread_atfork(hm_sampler_atfork_prepare,
                                   hm_sampler_atfork_parent,
                                   hm_sampler_atfork_child);
}

/* The exec slot: creates the types, registers the fork handlers.
   Returns 0, or -1 with an exception set. */
static int
module_exec(PyObject *module)
{
    hm_module_state *state = PyModule_GetState(module);
    PyObject *tracer_type = NULL, *noop_type = NULL;
    int rc = -1;

    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "hubmon._core does not support sub-interpreters");
        goto error;
    }
    /* The module keeps the tracer types through its dict only; it needs
       the record type itself, to check what ThreadTracer.add() is given. */
    tracer_type = PyType_FromModuleAndSpec(module, &hm_tracer_spec, NULL);
    if (tracer_type == NULL || PyModule_AddType(module, (PyTypeObject *)tracer_type) < 0) {
        goto error;
    }
    noop_type = PyType_FromModuleAndSpec(module, &hm_noop_tracer_spec, NULL);
    if (noop_type == NULL || PyModule_AddType(module, (PyTypeObject *)noop_type) < 0) {
        goto error;
    }
    state->record_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &hm_record_spec, NULL);
    if (state->record_type == NULL) {
        goto error;
    }
    if (PyModule_AddType(module, state->record_type) < 0) {
        goto error;
    }
    if (PyModule_AddIntConstant(module, "EVENT_BLOCKED", HM_EVENT_BLOCKED) < 0
            || PyModule_AddIntConstant(module, "EVENT_UNBLOCKED", HM_EVENT_UNBLOCKED) < 0
            || PyModule_AddIntConstant(module, "EVENT_CALL", HM_EVENT_CALL) < 0
            || PyModule_AddIntConstant(module, "EVENT_MEMORY", HM_EVENT_MEMORY) < 0
            || PyModule_AddIntConstant(module, "EVENT_SAMPLE", HM_EVENT_SAMPLE) < 0) {
        goto error;
    }
    pthread_once(&atfork_once, register_atfork);
    if (atfork_result != 0) {
        PyErr_SetString(PyExc_ImportError, "pthread_atfork failed");
        goto error;
    }
    rc = 0;

error:
    Py_XDECREF(tracer_type);
    Py_XDECREF(noop_type);
    return rc;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    hm_module_state *state = PyModule_GetState(module);
    Py_VISIT(state->record_type);
    Py_VISIT(state->gettrace);
    Py_VISIT(state->settrace);
    return 0;
}

static int
module_clear(PyObject *module)
{
    hm_module_state *state = PyModule_GetState(module);
    Py_CLEAR(state->record_type);
    Py_CLEAR(state->gettrace);
    Py_CLEAR(state->settrace);
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL}
};

PyDoc_STRVAR(module_doc,
"hubmon's native core: the greenlet tracer and the sampling thread.");

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "hubmon._core",
    .m_doc = module_doc,
    .m_size = sizeof(hm_module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&module_def);
}
