/*
 * callbacks.c: the only code that takes the GIL from the native thread and
 * calls into Python.
 *
 * The native thread calls hm_callback_dispatch() without the GIL and without
 * hm_sampler_lock. It checks that the interpreter is not finalizing and that
 * no stop was asked for, takes the GIL, checks again, and calls the event
 * handler that Python registered at import (hubmon._dispatch.native_event,
 * handed over by hubmon/_lifecycle.py through _core.set_event_handler) with
 * plain values; it returns the handler's outcome to the sampler, which acts
 * on it. This file is the GIL boundary: calls come in from sampler.c only,
 * go out to Python only, and never back into sampler.c (it only reads two
 * of the sampler's facts: whether a stop was asked for, and the pid). The
 * stack dump's state below shares hm_sampler_lock, so that the fork hooks,
 * which hold that lock across fork(), keep it consistent too.
 *
 * Python context: the native thread has ONE Python thread state for its
 * whole life, created at its first event and given back when it ends, as
 * any Python thread has. (A state made and destroyed per event would take
 * every thread-local with it, and greenlet's per-thread state, which user
 * code such as gevent.get_hub() relies on, would refer to a dead one.)
 *
 * A block made by a C call that holds the GIL cannot be reported from
 * Python while it lasts: taking the GIL waits for the whole call. So before
 * it waits, the native thread arms a one-shot timer aimed at the hub's
 * thread. If the GIL has not come within HM_GIL_PATIENCE seconds, the timer
 * sends that thread the signal on which faulthandler is registered:
 * faulthandler, best effort as always, writes every thread's Python stack
 * while the call still runs, under a header written by hubmon's own signal
 * handler, into a duplicate of the stream's file descriptor that hubmon owns.
 * Linux only (timer_create with SIGEV_THREAD_ID).
 */
#include "hubmon.h"

#include <errno.h>
#include <fcntl.h>
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

/* The Python callable that receives the events (a strong reference, touched
   only with the GIL), and the native thread's own Python thread state (used
   only by the native thread). */
static PyObject *handler;
static PyThreadState *native_tstate;
static PyGILState_STATE native_gilstate;

/* The stack dump's state. dump_fd (hubmon's own duplicate of the stream's
   descriptor), the armed timer and header_fd are guarded by
   hm_sampler_lock; the signal handler reads only the atomics and the
   header, which are written before header_ready is set. */
static int dump_fd = -1;
static atomic_int dump_active;
static char header[256];
static size_t header_len;
static int header_fd = -1;
static atomic_int header_ready;
/* 1 from the moment the native thread has the GIL: a timer signal that
   arrives after that (the timer fired just as the GIL came) dumps nothing,
   since the stacks are no longer frozen by the blocking call. */
static atomic_int gil_taken = 1;
/* Set when a dump was due but the signal no longer had hubmon's handler
   (the program restored SIG_DFL over it, say): sending it could kill the
   process. Read and cleared by Python (hm_gil_dump_is_lost). */
static atomic_int dump_lost;
#if HM_HAVE_GIL_DUMP
static timer_t armed_timer;
static int timer_armed;
#endif

/* The handler that was installed for the dump signal before ours
   (faulthandler's), which ours calls after writing the header. */
static struct sigaction previous_action;
static int installed_signal;

/* Sets the event handler. Needs the GIL. Returns 0, or -1 with an exception
   set when `callable` is not callable. */
int
hm_callback_handler_set(PyObject *callable)
{
    if (!PyCallable_Check(callable)) {
        PyErr_Format(PyExc_TypeError, "the event handler must be callable, not %R",
                     callable);
        return -1;
    }
    Py_INCREF(callable);
    Py_XSETREF(handler, callable);
    return 0;
}

/* Drops the event handler. Needs the GIL. */
void
hm_callback_handler_clear(void)
{
    Py_CLEAR(handler);
}

/* Runs in the hub's thread, in signal context: only async-signal-safe calls.
   Writes the header once, then lets faulthandler dump the stacks; does
   nothing while the dump is off (a signal that arrives late). */
static void
gil_dump_handler(int signum, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    if (!atomic_load(&dump_active) || atomic_load(&gil_taken)) {
        errno = saved_errno;
        return;
    }
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
    errno = saved_errno;
}

/* What is installed for `signum`: 0 the default action, 1 ignored, 2
   hubmon's handler, 3 another handler (the application's, faulthandler's,
   Python's). Needs nothing. Returns -1 for a number that is not a signal. */
int
hm_signal_disposition_get(int signum)
{
    struct sigaction now;
    if (signum <= 0 || signum >= NSIG || sigaction(signum, NULL, &now) != 0) {
        return -1;
    }
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == gil_dump_handler) {
        return 2;
    }
    if (!(now.sa_flags & SA_SIGINFO)) {
        if (now.sa_handler == SIG_DFL) {
            return 0;
        }
        if (now.sa_handler == SIG_IGN) {
            return 1;
        }
    }
    return 3;
}

/* Puts hubmon's handler in front of the one installed for `signum`
   (faulthandler's). Needs the GIL. Returns 0, or -1 with an exception. */
int
hm_gil_handler_install(int signum)
{
#if HM_HAVE_GIL_DUMP
    if (signum <= 0 || signum >= NSIG) {
        PyErr_Format(PyExc_ValueError, "signal number must be from 1 to %d, not %d",
                     NSIG - 1, signum);
        return -1;
    }
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
    /* SA_ONSTACK: on faulthandler's alternate stack where the thread has
       one, not on whatever greenlet stack happens to be current. */
    ours.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
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

/* Turns the dump on, writing into a duplicate of `fd` that hubmon owns (and
   closes in hm_gil_dump_disable). Needs the GIL. Returns the duplicate, or -1
   with an exception set. */
int
hm_gil_dump_enable(int fd)
{
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_mutex_lock(&hm_sampler_lock);
    int old = dump_fd;
    dump_fd = copy;
    atomic_store(&dump_active, 1);
    pthread_mutex_unlock(&hm_sampler_lock);
    if (old >= 0) {
        close(old);
    }
    return copy;
}

#if HM_HAVE_GIL_DUMP
/* Deletes the armed timer, if any. Needs hm_sampler_lock. */
static void
disarm_locked(void)
{
    if (timer_armed) {
        timer_delete(armed_timer);
        timer_armed = 0;
    }
    atomic_store(&header_ready, 0);
}
#endif

/* Takes hubmon's handler off its signal, putting back the one it was
   installed in front of (faulthandler's), if hubmon's is still the one in
   place; hubmon no longer uses a signal then. Needs the GIL. Returns 0. */
int
hm_gil_handler_uninstall(void)
{
#if HM_HAVE_GIL_DUMP
    pthread_mutex_lock(&hm_sampler_lock);
    disarm_locked();
    int signum = installed_signal;
    installed_signal = 0;
    pthread_mutex_unlock(&hm_sampler_lock);
    if (signum != 0 && hm_signal_disposition_get(signum) == 2) {
        (void)sigaction(signum, &previous_action, NULL);
    }
#endif
    return 0;
}

/* Whether a dump was skipped because the signal's handler is no longer
   hubmon's, since the last call. Needs nothing. */
int
hm_gil_dump_is_lost(void)
{
    return atomic_exchange(&dump_lost, 0);
}

/* Turns the dump off and closes hubmon's duplicate. A signal already on its
   way finds the handler inactive. Needs the GIL (or a single thread). */
void
hm_gil_dump_disable(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    atomic_store(&dump_active, 0);
#if HM_HAVE_GIL_DUMP
    disarm_locked();
#endif
    int old = dump_fd;
    dump_fd = -1;
    header_fd = -1;
    pthread_mutex_unlock(&hm_sampler_lock);
    if (old >= 0) {
        close(old);
    }
}

#if HM_HAVE_GIL_DUMP
/* Arms the one-shot timer for a blocked event. Needs hm_sampler_lock NOT
   held, no GIL. Returns 1 when armed, 0 when the event does not ask for it
   or the dump is off. */
static int
arm_gil_timer(const hm_event *ev)
{
    if (ev->kind != HM_EVENT_BLOCKED || !ev->gil_dump || ev->thread_tid <= 0) {
        return 0;
    }
    if (installed_signal == 0) {
        /* hubmon gave its signal up to the program. */
        atomic_store(&dump_lost, 1);
        return 0;
    }
    int armed = 0;
    pthread_mutex_lock(&hm_sampler_lock);
    if (dump_fd < 0 || !atomic_load(&dump_active) || timer_armed) {
        goto done;
    }
    /* Only while the handler in place is hubmon's: the default action of
       these signals ends the process. (While the block lasts the GIL is
       held, so no Python code can change the handler before the timer
       fires.) */
    if (hm_signal_disposition_get(installed_signal) != 2) {
        atomic_store(&dump_lost, 1);
        goto done;
    }
    int n = snprintf(header, sizeof(header),
                     "\nhubmon: the hub of thread 0x%lx has been blocked for"
                     " %.3f seconds and the GIL is held (a C call that does"
                     " not release it?); the Python stacks now:\n",
                     ev->thread_ident, ev->value + HM_GIL_PATIENCE);
    if (n < 0) {
        goto done;
    }
    header_len = (size_t)n < sizeof(header) ? (size_t)n : sizeof(header) - 1;
    header_fd = dump_fd;
    atomic_store(&header_ready, 1);
    atomic_store(&gil_taken, 0);

    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = installed_signal;
    sev.sigev_notify_thread_id = (pid_t)ev->thread_tid;
    if (timer_create(CLOCK_MONOTONIC, &sev, &armed_timer) != 0) {
        atomic_store(&header_ready, 0);
        goto done;
    }
    struct itimerspec when;
    memset(&when, 0, sizeof(when));
    when.it_value.tv_nsec = (long)(HM_GIL_PATIENCE * 1e9);
    if (timer_settime(armed_timer, 0, &when, NULL) != 0) {
        timer_delete(armed_timer);
        atomic_store(&header_ready, 0);
        goto done;
    }
    timer_armed = 1;
    armed = 1;
done:
    pthread_mutex_unlock(&hm_sampler_lock);
    return armed;
}
#endif

/* Takes the GIL in the native thread's own thread state, creating it at the
   first call. Needs no GIL, no hm_sampler_lock. */
static void
enter_python(void)
{
    if (native_tstate == NULL) {
        native_gilstate = PyGILState_Ensure();
        native_tstate = PyThreadState_Get();
    }
    else {
        PyEval_RestoreThread(native_tstate);
    }
}

/* Gives back the thread state kept for the native thread's whole life, as a
   Python thread does when it ends. Called by the native thread as it ends,
   without the GIL. Skipped while the interpreter finalizes, and when the
   thread is joined by one that holds the GIL (`give_back` 0: at exit, so
   that no other thread runs meanwhile): the interpreter frees every thread
   state itself as it finalizes. */
void
hm_callback_thread_exit(int give_back)
{
    if (give_back && native_tstate != NULL && !HM_IS_FINALIZING()) {
        PyEval_RestoreThread(native_tstate);
        native_tstate = NULL;
        PyGILState_Release(native_gilstate);
    }
    native_tstate = NULL;
}

/* In a forked child (pthread_atfork): the native thread and its thread state
   are gone (the interpreter frees the state); forget it. */
void
hm_callback_atfork_child(void)
{
    native_tstate = NULL;
}

/* The cause of a BLOCKED event as Python receives it: (kind, detail,
   cpu_time or None, hub_itself), the kind a name of hubmon.cause.KINDS;
   None for the other events. Needs the GIL. Returns a new reference, or
   NULL with an exception set. */
static PyObject *
cause_tuple(const hm_event *ev)
{
    PyObject *detail = NULL, *cpu = NULL, *result = NULL;
    if (ev->kind != HM_EVENT_BLOCKED) {
        Py_INCREF(Py_None);
        return Py_None;
    }
    int kind = ev->cause >= 0 && ev->cause <= HM_CAUSE_GC ? ev->cause : HM_CAUSE_UNKNOWN;
    /* The detail is the kernel's ASCII, but a path may hold any byte. */
    detail = PyUnicode_DecodeUTF8(ev->detail, (Py_ssize_t)strnlen(ev->detail, sizeof(ev->detail)),
                                  "replace");
    if (detail == NULL) {
        goto error;
    }
    if (ev->cpu_time >= 0) {
        cpu = PyFloat_FromDouble(ev->cpu_time);
        if (cpu == NULL) {
            goto error;
        }
    }
    else {
        cpu = Py_None;
        Py_INCREF(cpu);
    }
    result = Py_BuildValue("(sOOO)", hm_cause_names[kind], detail, cpu,
                           ev->hub_itself ? Py_True : Py_False);
error:
    Py_XDECREF(detail);
    Py_XDECREF(cpu);
    return result;
}

/* Hands one event to Python. Called by the native thread with neither the
   GIL nor hm_sampler_lock. Never calls into Python while the interpreter is
   finalizing or while the thread is asked to stop. Returns the handler's
   outcome (HM_OUTCOME_ACCEPTED unless it answers False, which is
   HM_OUTCOME_REJECTED), or HM_OUTCOME_NOT_DELIVERED; sets *held to the
   seconds this thread held the GIL for it (0 when it never took it). */
int
hm_callback_dispatch(const hm_event *ev, double *held)
{
    *held = 0.0;
    if (HM_IS_FINALIZING() || hm_sampler_is_stopping()) {
        return HM_OUTCOME_NOT_DELIVERED;
    }
    pid_t pid = hm_sampler_pid_get();
#if HM_HAVE_GIL_DUMP
    int armed = arm_gil_timer(ev);
#endif
    double asked = hm_clock_now();
    enter_python();
    atomic_store(&gil_taken, 1);
    double taken = hm_clock_now();
    double gil_wait = taken - asked;
#if HM_HAVE_GIL_DUMP
    if (armed) {
        pthread_mutex_lock(&hm_sampler_lock);
        disarm_locked();
        pthread_mutex_unlock(&hm_sampler_lock);
    }
#endif
    int outcome = HM_OUTCOME_NOT_DELIVERED;
    if (HM_IS_FINALIZING() || hm_sampler_is_stopping() || handler == NULL) {
        goto done;
    }
    PyObject *callable = handler;
    Py_INCREF(callable);
    PyObject *cause = cause_tuple(ev);
    if (cause == NULL) {
        /* Out of memory: the event goes without its cause. */
        PyErr_WriteUnraisable(callable);
        cause = Py_None;
        Py_INCREF(cause);
    }
    PyObject *result = PyObject_CallFunction(
        callable, "iLdKdKO", ev->kind, (long long)ev->record_id, ev->value,
        (unsigned long long)ev->current, gil_wait, (unsigned long long)ev->switches, cause);
    Py_DECREF(cause);
    if (getpid() != pid) {
        /* User code on this thread forked, and this is the child: its only
           thread is this one, which must not go on running hubmon's loop.
           The child ends here, as multiprocessing ends a child whose target
           returned. */
        _exit(0);
    }
    outcome = HM_OUTCOME_ACCEPTED;
    if (result == NULL) {
        PyErr_WriteUnraisable(callable);
    }
    else {
        if (result == Py_False) {
            outcome = HM_OUTCOME_REJECTED;
        }
        Py_DECREF(result);
    }
    Py_DECREF(callable);
done:
    *held = hm_clock_now() - taken;
    PyEval_SaveThread();
    return outcome;
}
