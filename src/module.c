/*
 * module.c: hubmon._core's initialisation (multi-phase), its functions,
 * and the process hooks (fork).
 *
 * Exit: hubmon/__init__.py registers _core.shutdown with atexit, which stops
 * and joins the native thread before the interpreter finalizes.
 * Fork: a pthread_atfork handler keeps hm_sampler_lock consistent and marks
 * the native thread gone in the child; os.register_at_fork calls
 * _core.after_fork_child, which restarts it for the thread that forked.
 * Sub-interpreters are not supported: the native thread belongs to the main
 * interpreter.
 */
#include "hubmon.h"

PyDoc_STRVAR(shutdown_doc,
"shutdown()\n--\n\n"
"Stop and join the native thread. Registered with atexit; safe to call\n"
"more than once. A later monitor starts the thread again.");

static PyObject *
hm_shutdown(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    /* The native thread may be waiting for the GIL: release it meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    hm_sampler_stop();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(after_fork_child_doc,
"after_fork_child()\n--\n\n"
"In a forked child: keep the records of the calling thread and restart\n"
"the native thread if there is anything to watch.");

static PyObject *
hm_after_fork_child(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (hm_sampler_reinit_after_fork(PyThread_get_thread_ident()) != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot restart the hubmon native thread after fork");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sampler_running_doc,
"sampler_running() -> bool\n--\n\nWhether the native thread exists.");

static PyObject *
hm_sampler_running(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(hm_sampler_is_running());
}

PyDoc_STRVAR(sampler_native_id_doc,
"sampler_native_id() -> int\n--\n\n"
"The kernel thread id of the native thread, or 0 when it does not run.");

static PyObject *
hm_sampler_native_id_py(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromLong(hm_sampler_native_id());
}

PyDoc_STRVAR(sampler_period_doc,
"sampler_period() -> float\n--\n\nSeconds between two samples now.");

static PyObject *
hm_sampler_period_py(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyFloat_FromDouble(hm_sampler_period());
}

PyDoc_STRVAR(set_memory_watch_doc,
"set_memory_watch(limit_bytes, period)\n--\n\n"
"Watch the process's memory every `period` seconds; limit 0 turns it off.");

static PyObject *
hm_set_memory_watch(PyObject *module, PyObject *args)
{
    (void)module;
    double limit, period;
    if (!PyArg_ParseTuple(args, "dd:set_memory_watch", &limit, &period)) {
        return NULL;
    }
    if (limit < 0 || !(period > 0)) {
        PyErr_Format(PyExc_ValueError,
                     "limit must be >= 0 and period > 0, not %R", args);
        return NULL;
    }
    if (limit > 0 && hm_sampler_start() != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot start the hubmon native thread");
        return NULL;
    }
    hm_sampler_set_memory(limit, period);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(install_gil_handler_doc,
"install_gil_handler(signum)\n--\n\n"
"Put hubmon's header writer in front of faulthandler's handler of signum.");

static PyObject *
hm_install_gil_handler(PyObject *module, PyObject *arg)
{
    (void)module;
    int signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (hm_gil_handler_install(signum) != 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(monotonic_doc,
"monotonic() -> float\n--\n\nThe native thread's clock (CLOCK_MONOTONIC).");

static PyObject *
hm_monotonic_py(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyFloat_FromDouble(hm_monotonic());
}

PyDoc_STRVAR(histogram_bounds_doc,
"histogram_bounds() -> tuple[float, ...]\n--\n\n"
"Upper bounds of the blocking histogram's buckets, in seconds.");

static PyObject *
hm_histogram_bounds(PyObject *module, PyObject *unused)
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

static PyMethodDef module_methods[] = {
    {"shutdown", hm_shutdown, METH_NOARGS, shutdown_doc},
    {"after_fork_child", hm_after_fork_child, METH_NOARGS, after_fork_child_doc},
    {"sampler_running", hm_sampler_running, METH_NOARGS, sampler_running_doc},
    {"sampler_native_id", hm_sampler_native_id_py, METH_NOARGS, sampler_native_id_doc},
    {"sampler_period", hm_sampler_period_py, METH_NOARGS, sampler_period_doc},
    {"set_memory_watch", hm_set_memory_watch, METH_VARARGS, set_memory_watch_doc},
    {"install_gil_handler", hm_install_gil_handler, METH_O, install_gil_handler_doc},
    {"monotonic", hm_monotonic_py, METH_NOARGS, monotonic_doc},
    {"histogram_bounds", hm_histogram_bounds, METH_NOARGS, histogram_bounds_doc},
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
    PyObject *bounds = NULL;

    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "hubmon._core does not support sub-interpreters");
        goto error;
    }
    state->tracer_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &hm_tracer_spec, NULL);
    if (state->tracer_type == NULL) {
        goto error;
    }
    if (PyModule_AddType(module, state->tracer_type) < 0) {
        goto error;
    }
    state->noop_tracer_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &hm_noop_tracer_spec, NULL);
    if (state->noop_tracer_type == NULL) {
        goto error;
    }
    if (PyModule_AddType(module, state->noop_tracer_type) < 0) {
        goto error;
    }
    pthread_once(&atfork_once, register_atfork);
    if (atfork_result != 0) {
        PyErr_SetString(PyExc_ImportError, "pthread_atfork failed");
        goto error;
    }
    return 0;

error:
    Py_XDECREF(bounds);
    return -1;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    hm_module_state *state = PyModule_GetState(module);
    Py_VISIT(state->tracer_type);
    Py_VISIT(state->noop_tracer_type);
    return 0;
}

static int
module_clear(PyObject *module)
{
    hm_module_state *state = PyModule_GetState(module);
    Py_CLEAR(state->tracer_type);
    Py_CLEAR(state->noop_tracer_type);
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
