/*
 * hubmon.h: private declarations shared by the C sources of hubmon._core.
 *
 * The files, one role each, and which way calls go (an arrow is "calls"):
 *
 *   greenlet --(every switch, GIL held)--> tracer.c        the hot path
 *   tracer.c --(once per doze / fork)----> sampler.c       wake-up only
 *   hubmon (Python) --(GIL held)--> module.c, thread_tracer.c, record.c
 *   module.c, thread_tracer.c, record.c --> sampler.c      records, lock
 *   sampler.c (native thread, NO GIL) --> callbacks.c       plain events
 *   callbacks.c --(takes the GIL)--> the handler Python registered
 *                 <-- returns an outcome; sampler.c acts on it
 *
 * tracer.c: the per-switch path; counts into plain C records (hm_record)
 *   and never takes a lock or reads a clock on the common path.
 * thread_tracer.c: the ThreadTracer type (one per thread, holding that
 *   thread's records in a small array) and the NoopTracer baseline.
 * record.c: _core.Record, the Python face of one record.
 * sampler.c: the one native thread; owns the records, their lock and
 *   their lifetime; decides that a hub is blocked without the GIL.
 * callbacks.c: the GIL boundary: the only code that takes the GIL from the
 *   native thread and calls into Python (the handler hubmon registered at
 *   import, through module.c; C never looks Python up by name), plus the
 *   stack dump for blocks made by C calls that hold the GIL.
 * module.c: module init, the module's functions, exit and fork hooks.
 * cause.c: the kernel's view of a thread (its syscall, its state, what its
 *   fd is), read from /proc without the GIL; called by sampler.c only (and
 *   the white-box _core.kernel_view).
 *
 * Shared symbols are named hm_<noun>_<verb> (hm_sampler_add,
 * hm_record_threshold_set); macros HM_*; everything else is static.
 */
#ifndef HUBMON_H
#define HUBMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#if PY_VERSION_HEX >= 0x030D0000
#  define HM_IS_FINALIZING() Py_IsFinalizing()
#else
#  define HM_IS_FINALIZING() _Py_IsFinalizing()
#endif

/* What a record counts as "progress". */
#define HM_MODE_HUB 0      /* switches into the hub; the hub running is fine */
#define HM_MODE_ANY 1      /* any switch at all */

/* The kinds of event the native thread hands to Python; the same numbers are
   _core.EVENT_BLOCKED and so on. */
#define HM_EVENT_BLOCKED 1
#define HM_EVENT_UNBLOCKED 2
#define HM_EVENT_CALL 3
#define HM_EVENT_MEMORY 4
#define HM_EVENT_SAMPLE 5   /* take a profile sample of a blocked hub's thread */

/* What became of an event: the handler's answer, or that it never ran. */
#define HM_OUTCOME_NOT_DELIVERED (-1)   /* exiting, stopping, or no handler */
#define HM_OUTCOME_REJECTED 0           /* the evidence contradicts a block */
#define HM_OUTCOME_ACCEPTED 1

/* Upper bounds of the blocking-duration histogram buckets, in milliseconds. */
#define HM_HIST_BUCKETS 11
extern const double hm_hist_bounds_ms[HM_HIST_BUCKETS];

/*
 * One monitored scope: a hub watched by a Monitor, or the body of an
 * assert_switches() block. Plain C, shared between the traced thread (which
 * writes the atomics, holding the GIL) and the native thread (which reads
 * them without the GIL). It holds no Python object.
 *
 * Lifetime: reference counted under hm_sampler_lock. Its Python handle
 * (record.c) holds one reference, the thread's tracer one while it counts
 * for it, and the sampler's list one while it is sampled.
 */
typedef struct hm_record {
    /* Written only by the traced thread; read by the sampler. The counters
       have a single writer, so a relaxed load-add-store suffices, and a
       stale read only delays detection by one sample. */
    _Atomic uint64_t switches;
    _Atomic uint64_t hub_switches;
    _Atomic uintptr_t current;      /* identity of the running greenlet */
    _Atomic int hub_running;
    /* The end of a long stretch, to the clock: the sampler arms the stamp
       when a sample sees a stretch without progress; the first switch that
       is progress for this record (any switch, or one into the hub) takes
       it, reading the monotonic clock once. So a stretch that outlived a
       sample has an exact end, even when the native thread could not sample
       meanwhile (it waited for a GIL that a C call held, or ran a slow
       capture). Short stretches, and a hub that keeps switching, never read
       the clock. */
    _Atomic int stamp_armed;
    _Atomic double progress_at;     /* monotonic seconds of that switch */
    _Atomic uint64_t stamp_count;   /* the watched counter just after it: the
                                       stamp ends the stretch a sample saw
                                       only if it is that sample's count + 1 */

    /* Fixed at creation. */
    uintptr_t hub;                  /* identity of the hub greenlet, or 0 */
    int mode;                       /* HM_MODE_HUB or HM_MODE_ANY */
    int reports;                    /* whether the sampler reports blocks */
    int64_t id;                     /* key used by the Python side */
    unsigned long thread_ident;     /* PyThread_get_thread_ident() of the hub's thread */
    pthread_t thread;               /* the same thread, for signals */
    long thread_tid;                /* its kernel thread id, for timers */

    /* Everything below is guarded by hm_sampler_lock. */
    double threshold;               /* seconds */
    int refcnt;
    int active;                     /* in the sampler's list */
    uint64_t seen;                  /* last value of the watched counter */
    double since;                   /* earliest start of the stretch without progress */
    double since_late;              /* latest start of it (first sample that saw it) */
    double held_since_for;          /* the since that held_since was taken for */
    double held_since;              /* hubmon's GIL hold total at since (sampler.c) */
    double last_sample;             /* when this record was last sampled */
    int seen_out_once;              /* a sample saw the stretch in progress */
    double longest_gap;             /* longest stretch without progress */
    int blocked;                    /* a block was reported and has not ended */
    int tracers;                    /* thread tracers counting into it */
    int blind;                      /* Python found the counters stale (see below) */
    uint64_t blind_switches;        /* the switch count they were stale at */
    uint64_t ignored_switches;      /* ignore_current(): switch count to ignore */
    int ignoring;
    double next_call;               /* monitoring functions due; 0 = none */
    int call_pending;
    uint64_t blocks;                /* blockages reported */
    double longest_block;           /* seconds */
    uint64_t histogram[HM_HIST_BUCKETS + 1];
    int gil_dump;                   /* arm the GIL stack dump for its blocks */
    struct hm_record *next;

    /* Diagnosis: the cause, the profile, blocks in the hub itself. Kept
       after the fields above, which the tracer touches on every switch, so
       that those keep their place in the first cache lines.

       Iterations of the hub's event loop, counted by a prepare watcher
       (record.c's loop_iteration), and whether any was counted: a hub that
       runs without a switch through the same iteration is in one callback,
       or in its wait for events. Written by the hub's thread only. */
    _Atomic uint64_t loop_iterations;
    _Atomic int loop_counted;
    /* Fixed at creation: the thread's CPU clock (pthread_getcpuclockid). */
    clockid_t cpu_clock;
    int has_cpu_clock;
    /* Everything below is guarded by hm_sampler_lock. The thread's CPU
       time (seconds; -1 unknown): at the last sample, and at cpu_since_at,
       a sample at or just before the stretch began. */
    double cpu_last;
    double cpu_since;
    double cpu_since_at;
    /* The profile of a reported blockage: samples taken and the next due. */
    int profile_pending;
    int profile_taken;
    double next_profile;
    /* Blocks inside the hub itself (the hub runs, in one iteration of its
       loop, but not in its wait for events): looks at its thread every
       threshold / 2, once the loop's iterations are counted. */
    int fine_last;                  /* the last sample found the hub running */
    uint64_t seen_before;           /* `seen` before the last sample's */
    int hub_blocked;                /* the reported block is the hub's own */
    double hub_look_at;             /* the next look is due then */
    double hub_look_time;           /* the last look, and the CPU time then */
    double hub_look_cpu;
    int hub_look_waiting;           /* that look found it in its loop's wait */
    uint64_t hub_look_iteration;    /* the loop's iteration then */
    double hub_idle_at;             /* the last look that found it waiting for events, */
    double hub_idle_cpu;            /* and the thread's CPU time then */
    double hub_busy_at;             /* the first look since that found it busy, or 0, */
    double hub_busy_from;           /* and the latest it can have become busy, */
    double hub_busy_est;            /* and the best estimate of when it did */
} hm_record;

/* A copy of a record's figures, taken under the lock. */
typedef struct {
    uint64_t switches;
    uint64_t hub_switches;
    uint64_t blocks;
    double longest_block;
    int blocked_now;
    double current_block;
    double longest_gap;
    double threshold;
    uint64_t histogram[HM_HIST_BUCKETS + 1];
} hm_record_figures;

/* cause.c: the kernel's view of a thread. */

/* The kinds of cause of a blockage; the same order as hubmon.cause.KINDS. */
#define HM_CAUSE_UNKNOWN 0
#define HM_CAUSE_CPU 1
#define HM_CAUSE_SLEEP 2
#define HM_CAUSE_IO 3
#define HM_CAUSE_LOCK 4
#define HM_CAUSE_GIL 5      /* decided by the sampler, never by cause.c */
#define HM_CAUSE_GC 6       /* decided by the sampler, never by cause.c */
#define HM_DETAIL_MAX 200

/* The names of the kinds, indexed by HM_CAUSE_*. */
extern const char *const hm_cause_names[7];

typedef struct {
    int kind;               /* HM_CAUSE_UNKNOWN, CPU, SLEEP, IO or LOCK */
    int waits_for_events;   /* in a call an event loop waits in: epoll_wait/epoll_pwait/epoll_pwait2,
                               poll/ppoll or select/pselect6 with at least one fd */
    long syscall;           /* the syscall number, -1 running (not in a syscall), -2 unknown */
    char state;             /* the state letter of /proc/.../stat ('R', 'S', 'D', ...), 0 unknown */
    char detail[HM_DETAIL_MAX];   /* plain ASCII, NUL-terminated */
} hm_kernel_view;

/* Reads what the kernel says thread `tid` of this process is doing now.
   Needs nothing (no GIL, no lock; safe on the native thread). Returns 0, or
   -1 when nothing can be read (not Linux, no /proc, the thread is gone):
   then kind is HM_CAUSE_UNKNOWN and detail says why. Never blocks for long,
   never allocates. */
int hm_kernel_view_read(long tid, hm_kernel_view *out);

/* One event for Python: plain facts copied out of a record under the lock. */
typedef struct {
    int kind;                       /* HM_EVENT_* */
    int64_t record_id;
    double value;                   /* seconds (a duration), or bytes (memory) */
    uintptr_t current;
    uint64_t switches;              /* the record's switch count when decided */
    unsigned long thread_ident;
    long thread_tid;
    int gil_dump;
    /* BLOCKED only: the cause, filled by the sampler without the lock. */
    int hub_itself;                 /* the hub runs, but not in its loop's wait */
    int cause;                      /* HM_CAUSE_* */
    double cpu_time;                /* CPU seconds meanwhile, or -1 unknown */
    double cpu_ratio;               /* cpu_time over the wall time it covers, or -1 */
    double cpu_since_at;            /* when the CPU time was first read, or 0 */
    char detail[HM_DETAIL_MAX];
} hm_event;

/* sampler.c: the native thread, the records and their lock. */
extern pthread_mutex_t hm_sampler_lock;
extern atomic_int hm_dozing;
extern atomic_int hm_resume_pending;
double hm_clock_now(void);
hm_record *hm_record_new(int mode, uintptr_t hub, double threshold, int reports);
void hm_record_incref(hm_record *rec);
void hm_record_decref(hm_record *rec);
void hm_record_figures_get(hm_record *rec, int finish, hm_record_figures *out);
void hm_record_threshold_set(hm_record *rec, double threshold);
void hm_record_ignore_set(hm_record *rec, int ignoring);
void hm_record_next_call_set(hm_record *rec, double when);
void hm_record_call_done(hm_record *rec, double next_call);
void hm_record_gil_dump_set(hm_record *rec, int on);
void hm_record_tracers_add(hm_record *rec, int delta);
int hm_sampler_add(hm_record *rec);
void hm_sampler_remove(hm_record *rec);
void hm_sampler_poke(void);
void hm_sampler_resume(void);
int hm_sampler_start(void);
int hm_sampler_stop_for_good(void);
void hm_sampler_join_for_good(void);
int hm_sampler_is_running(void);
int hm_sampler_dispatching_get(void);
int hm_sampler_is_shut_down(void);
long hm_sampler_native_id_get(void);
int hm_sampler_is_stopping(void);
pid_t hm_sampler_pid_get(void);
void hm_sampler_memory_set(double limit_bytes, double period);
void hm_sampler_memory_done(int exceeded);
void hm_sampler_atfork_prepare(void);
void hm_sampler_atfork_parent(void);
void hm_sampler_atfork_child(void);
void hm_sampler_child_reinit(unsigned long survivor_ident);
double hm_sampler_period_get(void);

/* sampler.c: the garbage collector's passes (gc.callbacks, GIL held). */
void hm_gc_phase_set(int started, int generation);

/* callbacks.c: the only code that takes the GIL from the native thread. */
int hm_callback_handler_set(PyObject *handler);
void hm_callback_handler_clear(void);
int hm_callback_dispatch(const hm_event *event, double *held);
void hm_callback_thread_exit(int give_back);
void hm_callback_atfork_child(void);
int hm_gil_handler_install(int signum);
int hm_gil_handler_uninstall(void);
int hm_gil_dump_enable(int fd);
void hm_gil_dump_disable(void);
int hm_gil_dump_is_lost(void);
int hm_signal_disposition_get(int signum);

/* A thread's trace function: its type is in thread_tracer.c, its call (the
   per-switch hot path) in tracer.c. */
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

/* tracer.c: greenlet's call of a ThreadTracer, on every switch. */
PyObject *hm_tracer_call(PyObject *callable, PyObject *const *args, size_t nargsf,
                         PyObject *kwnames);

/* thread_tracer.c and record.c: the Python types of a thread's tracing. */
extern PyType_Spec hm_tracer_spec;
extern PyType_Spec hm_noop_tracer_spec;
extern PyType_Spec hm_record_spec;

/* The module's state: only what C uses. */
typedef struct {
    PyTypeObject *record_type;  /* what ThreadTracer.add() accepts */
    PyObject *gettrace;         /* greenlet.gettrace, handed over by Python */
    PyObject *settrace;         /* greenlet.settrace, handed over by Python */
} hm_module_state;

/* The Python handle of a record (record.c); tracer.c reads `rec`. */
typedef struct {
    PyObject_HEAD
    hm_record *rec;         /* owned reference */
} hm_record_object;

#endif /* HUBMON_H */
