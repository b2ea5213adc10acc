/*
 * callbacks.c: the only code that takes the GIL from the native thread and
 * calls into Python.
 *
 * The native thread calls hm_callback_dispatch() without the GIL and without
 * hm_sampler_lock. It checks that the interpreter is not finalizing and that
 * no stop was asked for, takes the GIL, checks again, and calls
 * hubmon.monitor._native_event(kind, record_id, value, current, gil_wait).
 *
 * A block made by a C call that holds the GIL cannot be reported from
 * Python while it lasts: PyGILState_Ensure() waits for the whole call. So
 * before it waits, the native thread arms a one-shot timer aimed at the
 * hub's thread. If the GIL has not come within HM_GIL_PATIENCE seconds, the
 * timer sends that thread the signal on which faulthandler is registered:
 * faulthandler, best effort as always, writes every thread's Python stack
 * while the call still runs, under a header written by hubmon's own signal
 * handler. This is Linux only (timer_create with SIGEV_THREAD_ID).
 */
#include "hubmon.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long the native thread waits for the GIL before it concludes the GIL
   is held and asks for the stack dump. A thread running Python code gives
   the GIL up within the switch interval (5 ms by default). */
#define HM_GIL_PATIENCE 0.05

#if defined(__linux__) && defined(SIGEV_THREAD_ID)
#  define HM_HAVE_GIL_DUMP 1
#  ifndef sigev_notify_thread_id
#    define sigev_notify_thread_id _sigev_un._tid
#  endif
#else
#  define HM_HAVE_GIL_DUMP 0
#endif

/* The header the signal handler writes. Filled by the native thread before
   it arms the timer and read only by the handler; the release store of
   header_ready orders the two. */
static char header[256];
static size_t header_len;
static int header_fd = -1;
static atomic_int header_ready;

/* The handler that was installed for the dump signal before ours
   (faulthandler's), which ours calls after writing the header. */
static struct sigaction previous_action;
static int installed_signal;

/* Runs in the hub's thread, in signal context: only async-signal-safe calls.
   Writes the header once, then lets faulthandler dump the stacks. */
static void
gil_dump_handler(int signum, siginfo_t *info, void *context)
{
    if (atomic_exchange(&header_ready, 0) && header_fd >= 0) {
        ssize_t written = write(header_fd, header, header_len);
        (void)written;
    }
    if (previous_action.sa_flags & SA_SIGINFO) {
        if (previous_action.sa_sigaction != NULL) {
            previous_action.sa_sigaction(signum, info, context);
        }
    }
    else if (previous_action.sa_handler != SIG_DFL
             && previous_action.sa_handler != SIG_IGN
             && previous_action.sa_handler != NULL) {
        previous_action.sa_handler(signum);
    }
}

/* Puts hubmon's handler in front of the one installed for `signum`
   (faulthandler's). Needs the GIL. Returns 0, or -1 with an exception. */
int
hm_gil_handler_install(int signum)
{
#if HM_HAVE_GIL_DUMP
    if (installed_signal == signum) {
        return 0;
    }
    if (installed_signal != 0) {
        PyErr_Format(PyExc_ValueError,
                     "the GIL stack dump already uses signal %d", installed_signal);
        return -1;
    }
    struct sigaction ours;
    memset(&ours, 0, sizeof(ours));
    ours.sa_sigaction = gil_dump_handler;
    ours.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    if (sigaction(signum, &ours, &previous_action) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    installed_signal = signum;
    return 0;
#else
    (void)signum;
    PyErr_SetString(PyExc_NotImplementedError,
                    "the GIL stack dump needs Linux timers");
    return -1;
#endif
}

#if HM_HAVE_GIL_DUMP
/* Arms the one-shot timer for a blocked event. Needs no GIL. Returns 1 and
   sets *timer when armed, 0 when the event does not ask for it. */
static int
arm_gil_timer(const hm_event *ev, timer_t *timer)
{
    if (ev->kind != HM_EVENT_BLOCKED || ev->gil_signal <= 0
            || ev->gil_signal != installed_signal || ev->thread_tid <= 0) {
        return 0;
    }
    int n = snprintf(header, sizeof(header),
                     "\nhubmon: the hub of thread 0x%lx has been blocked for"
                     " %.3f seconds and the GIL is held (a C call that does"
                     " not release it?); the Python stacks now:\n",
                     ev->thread_ident, ev->duration + HM_GIL_PATIENCE);
    if (n < 0) {
        return 0;
    }
    header_len = (size_t)n < sizeof(header) ? (size_t)n : sizeof(header) - 1;
    header_fd = ev->gil_fd;
    atomic_store(&header_ready, 1);

    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = ev->gil_signal;
    sev.sigev_notify_thread_id = (pid_t)ev->thread_tid;
    if (timer_create(CLOCK_MONOTONIC, &sev, timer) != 0) {
        atomic_store(&header_ready, 0);
        return 0;
    }
    struct itimerspec when;
    memset(&when, 0, sizeof(when));
    when.it_value.tv_sec = 0;
    when.it_value.tv_nsec = (long)(HM_GIL_PATIENCE * 1e9);
    if (timer_settime(*timer, 0, &when, NULL) != 0) {
        timer_delete(*timer);
        atomic_store(&header_ready, 0);
        return 0;
    }
    return 1;
}
#endif

/* The name of each event kind as Python sees it. */
static const char *
kind_name(hm_event_kind kind)
{
    switch (kind) {
    case HM_EVENT_BLOCKED:
        return "blocked";
    case HM_EVENT_UNBLOCKED:
        return "unblocked";
    case HM_EVENT_CALL:
        return "call";
    case HM_EVENT_MEMORY:
        return "memory";
    }
    return "unknown";
}

/* Calls hubmon.monitor._native_event for one event. Needs the GIL.
   Returns the result (a new reference) or NULL with an exception set. */
static PyObject *
call_python(const hm_event *ev, double gil_wait)
{
    PyObject *name = NULL, *module = NULL, *result = NULL;
    name = PyUnicode_FromString("hubmon.monitor");
    if (name == NULL) {
        goto error;
    }
    module = PyImport_GetModule(name);
    if (module == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "hubmon.monitor is not imported");
        }
        goto error;
    }
    result = PyObject_CallMethod(module, "_native_event", "sLdKd",
                                 kind_name(ev->kind), (long long)ev->record_id,
                                 ev->duration,
                                 (unsigned long long)ev->current, gil_wait);
error:
    Py_XDECREF(name);
    Py_XDECREF(module);
    return result;
}

/* Hands one event to Python. Called by the native thread with neither the
   GIL nor hm_sampler_lock. Never calls into Python while the interpreter is
   finalizing or while the thread is asked to stop. */
void
hm_callback_dispatch(const hm_event *ev)
{
    if (HM_IS_FINALIZING() || hm_sampler_stopping()) {
        goto unlock_state;
    }
#if HM_HAVE_GIL_DUMP
    timer_t timer;
    int armed = arm_gil_timer(ev, &timer);
#endif
    double asked = hm_monotonic();
    PyGILState_STATE gstate = PyGILState_Ensure();
    double gil_wait = hm_monotonic() - asked;
#if HM_HAVE_GIL_DUMP
    if (armed) {
        timer_delete(timer);
        atomic_store(&header_ready, 0);
    }
#endif
    if (HM_IS_FINALIZING() || hm_sampler_stopping()) {
        PyGILState_Release(gstate);
        goto unlock_state;
    }
    PyObject *result = call_python(ev, gil_wait);
    if (result == NULL) {
        PyErr_WriteUnraisable(NULL);
    }
    /* Python answers a memory event with whether usage is over the limit and
       a call event with when the functions are next due. */
    if (ev->kind == HM_EVENT_MEMORY) {
        int exceeded = result != NULL ? PyObject_IsTrue(result) : -1;
        if (exceeded < 0) {
            PyErr_Clear();
        }
        hm_sampler_memory_done(exceeded);
    }
    else if (ev->kind == HM_EVENT_CALL) {
        double next = 0.0;
        if (result != NULL && result != Py_None) {
            next = PyFloat_AsDouble(result);
            if (next == -1.0 && PyErr_Occurred()) {
                PyErr_WriteUnraisable(NULL);
                next = hm_monotonic() + 1.0;
            }
        }
        hm_sampler_call_done(ev->record_id, next);
    }
    Py_XDECREF(result);
    PyGILState_Release(gstate);
    return;

unlock_state:
    /* Nothing ran: clear the pending flags so a restarted thread goes on. */
    if (ev->kind == HM_EVENT_MEMORY) {
        hm_sampler_memory_done(-1);
    }
    else if (ev->kind == HM_EVENT_CALL) {
        hm_sampler_call_done(ev->record_id, hm_monotonic() + 0.1);
    }
}
