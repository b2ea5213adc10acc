/*
 * hubmon.h: private declarations shared by the C sources of hubmon._core.
 *
 * The design in one paragraph: a trace callable (tracer.c), installed with
 * greenlet.settrace() in a hub's thread, counts switches into a plain C
 * record (hm_record) and remembers the identity of the greenlet that runs.
 * One native thread (sampler.c) reads those records without the GIL and
 * decides when a hub is blocked. Only then does it take the GIL, through
 * callbacks.c, and hand the facts to Python (hubmon.monitor), which builds
 * the report and fires the events.
 */
#ifndef HUBMON_H
#define HUBMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#if PY_VERSION_HEX >= 0x030D0000
#  define HM_IS_FINALIZING() Py_IsFinalizing()
#else
#  define HM_IS_FINALIZING() _Py_IsFinalizing()
#endif

/* What a record counts as "progress". */
#define HM_MODE_HUB 0      /* switches into the hub; the hub running is fine */
#define HM_MODE_ANY 1      /* any switch at all */

/* Upper bounds of the blocking-duration histogram buckets, in milliseconds. */
#define HM_HIST_BUCKETS 11
extern const double hm_hist_bounds_ms[HM_HIST_BUCKETS];

/*
 * One monitored scope: a hub watched by a Monitor, or the body of an
 * assert_switches() block. Plain C, shared between the traced thread (which
 * writes the atomics, holding the GIL) and the native thread (which reads
 * them without the GIL). It holds no Python object.
 *
 * Lifetime: reference counted under hm_sampler_lock. The tracer that writes
 * it holds one reference, the sampler's list another while it is active.
 */
typedef struct hm_record {
    /* Written only by the traced thread; read by the sampler. The counters
       have a single writer, so a relaxed load-add-store suffices, and a
       stale read only delays detection by one sample. */
    _Atomic uint64_t switches;
    _Atomic uint64_t hub_switches;
    _Atomic uintptr_t current;      /* identity of the running greenlet */
    _Atomic int hub_running;

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
    double last_sample;             /* when this record was last sampled */
    int seen_out_once;              /* a sample saw the stretch in progress */
    double longest_gap;             /* longest stretch without progress */
    int blocked;                    /* a block was reported and has not ended */
    uint64_t ignored_switches;      /* ignore_current(): switch count to ignore */
    int ignoring;
    double next_call;               /* monitoring functions due; 0 = none */
    int call_pending;
    uint64_t blocks;                /* blockages reported */
    double longest_block;           /* seconds */
    uint64_t histogram[HM_HIST_BUCKETS + 1];
    int gil_fd;                     /* where to write the GIL-held stack dump, or -1 */
    int gil_signal;                 /* signal faulthandler listens to, or 0 */
    struct hm_record *next;
} hm_record;

/* sampler.c: the native thread. */
extern pthread_mutex_t hm_sampler_lock;
extern atomic_int hm_dozing;
void hm_sampler_poke(void);
double hm_monotonic(void);
hm_record *hm_record_new(int mode, uintptr_t hub, double threshold, int reports);
void hm_record_decref(hm_record *rec);
int hm_sampler_add(hm_record *rec);
void hm_sampler_remove(hm_record *rec);
void hm_sampler_wake(void);
int hm_sampler_start(void);
void hm_sampler_stop(void);
int hm_sampler_is_running(void);
long hm_sampler_native_id(void);
int hm_sampler_stopping(void);
void hm_sampler_call_done(int64_t record_id, double next_call);
void hm_sampler_set_memory(double limit_bytes, double period);
void hm_sampler_memory_done(int exceeded);
void hm_sampler_atfork_prepare(void);
void hm_sampler_atfork_parent(void);
void hm_sampler_atfork_child(void);
int hm_sampler_reinit_after_fork(unsigned long survivor_ident);
double hm_sampler_period(void);

/* callbacks.c: the only code that takes the GIL from the native thread. */
typedef enum {
    HM_EVENT_BLOCKED,
    HM_EVENT_UNBLOCKED,
    HM_EVENT_CALL,
    HM_EVENT_MEMORY
} hm_event_kind;

typedef struct {
    hm_event_kind kind;
    int64_t record_id;
    double duration;
    uintptr_t current;
    unsigned long thread_ident;
    pthread_t thread;
    long thread_tid;
    int gil_fd;
    int gil_signal;
    double threshold;
} hm_event;

void hm_callback_dispatch(const hm_event *event);
int hm_gil_handler_install(int signum);

/* tracer.c */
extern PyType_Spec hm_tracer_spec;
extern PyType_Spec hm_noop_tracer_spec;

typedef struct {
    PyTypeObject *tracer_type;
    PyTypeObject *noop_tracer_type;
} hm_module_state;

#endif /* HUBMON_H */
