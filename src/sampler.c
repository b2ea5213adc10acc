/*
 * sampler.c: the one native thread of the process, and the records it reads.
 *
 * It wakes at a period derived from the smallest threshold, reads every
 * record's counters without the GIL, and decides whether a hub is blocked.
 * It never touches a Python object: when something must be reported it
 * copies plain facts into an hm_event, drops hm_sampler_lock, and hands the
 * event to callbacks.c, which takes the GIL and returns the handler's
 * outcome; the sampler then acts on it. Lock order is GIL first, then
 * hm_sampler_lock; this thread never waits for the GIL holding the lock.
 */
#include "hubmon.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#  include <sys/syscall.h>
#endif

/* A sample every threshold/HM_PERIOD_DIVISOR, within these bounds. */
#define HM_PERIOD_DIVISOR 8.0
#define HM_MIN_PERIOD 0.001
#define HM_MAX_PERIOD 1.0
/* How many events one pass hands to Python; the rest wait for the next pass. */
#define HM_MAX_EVENTS 32
/* How long exit waits for the native thread, in seconds. */
#define HM_EXIT_PATIENCE 1
/* A sample more than this many periods after the previous one comes after a
   hold-up (a long hand-over to Python): the previous one no longer bounds
   when a new stretch began. */
#define HM_STALE_SAMPLES 2.0

/* The hand-overs to Python whose GIL holds are remembered, latest first: a
   stretch's start is never older than the last few. */
#define HM_HELD_KEPT 8
/* The alignment of a record: a cache line. */
#define HM_RECORD_ALIGN 64
_Static_assert(offsetof(hm_record, mode) + sizeof(int) <= HM_RECORD_ALIGN,
               "the fields the tracer reads on every switch must share a cache line");
/* When an event could not reach Python, how soon its work is retried. */
#define HM_RETRY_DELAY 0.1
/* A blockage's profile: the interval doubles after every this many samples,
   at most this many times. */
#define HM_PROFILE_DOUBLING 256
#define HM_PROFILE_MAX_DOUBLINGS 8
/* The shortest interval between looks at a running hub's thread, seconds. */
#define HM_MIN_LOOK 0.025
/* What a look at a running hub finds (hub_look). */
#define HM_HUB_WAITING 0
#define HM_HUB_BUSY 1
/* A blocked thread that used this share of the time on the CPU is busy. */
#define HM_BUSY_CPU_SHARE 0.5

const double hm_hist_bounds_ms[HM_HIST_BUCKETS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500
};

pthread_mutex_t hm_sampler_lock = PTHREAD_MUTEX_INITIALIZER;

/* 1 while the native thread dozes because every hub runs; read by the
   tracer on each switch away from a hub. */
atomic_int hm_dozing;

/* 1 in a forked child whose native thread has not been restarted yet: the
   tracer restarts it at the first switch into a hub (see
   hm_sampler_child_reinit). */
atomic_int hm_resume_pending;

/* Process-wide state of the native thread, guarded by hm_sampler_lock.
   Plain C only: after fork() the child handler resets the synchronisation
   objects and marks the thread gone. */
static struct {
    pthread_cond_t cond;
    int cond_ready;
    pthread_t thread;
    int thread_exists;          /* created and not yet joined */
    int stop_requested;
    int shut_down;              /* permanent: the interpreter is exiting */
    long native_id;
    pid_t pid;                  /* the process the thread runs in */
    hm_record *records;
    int64_t next_id;
    double mem_limit;           /* bytes; 0 = memory not watched */
    double mem_period;
    double mem_next;
    int mem_exceeded;
    int mem_pending;
    int dispatching;            /* events decided and not yet answered */
    int held_up;                /* the last hand-over to Python took long */
    int joined_with_gil;        /* at exit: the joiner holds the GIL */
    double held_total;          /* seconds this thread has held the GIL, handing over */
    double held_from[HM_HELD_KEPT];   /* when the latest hand-overs' holds began */
    double held_length[HM_HELD_KEPT]; /* and how long each held the GIL, seconds */
    unsigned held_next;         /* the slot of the next hand-over */
} S;

/* The thread (PyThread_get_thread_ident) in which a garbage-collection pass
   runs now, or 0, and that pass's generation: written by gc.callbacks
   through hm_gc_phase_set (holding the GIL), read by the sampler. */
static _Atomic unsigned long gc_thread;
static atomic_int gc_generation;

/* Returns the CLOCK_MONOTONIC time in seconds (the clock of time.monotonic()
   on Linux). Needs nothing; never fails on a supported system. */
double
hm_clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Initialises the condition variable on the monotonic clock.
   Needs hm_sampler_lock (or a single thread, after fork). Returns 0 or -1. */
static int
cond_init(void)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        return -1;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&S.cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        return -1;
    }
    S.cond_ready = 1;
    return 0;
}

/* Allocates a record for the calling thread with one reference (the
   caller's). Needs nothing. Returns NULL when out of memory (no Python
   exception is set). */
hm_record *
hm_record_new(int mode, uintptr_t hub, double threshold, int reports)
{
    /* On a cache line of its own: everything the tracer touches on every
       switch (the atomics, then hub and mode) fits in its first 64 bytes,
       whatever malloc's alignment. */
    void *memory = NULL;
    if (posix_memalign(&memory, HM_RECORD_ALIGN, sizeof(hm_record)) != 0) {
        return NULL;
    }
    hm_record *rec = memset(memory, 0, sizeof(hm_record));
    atomic_init(&rec->switches, 0);
    atomic_init(&rec->hub_switches, 0);
    atomic_init(&rec->current, 0);
    atomic_init(&rec->hub_running, 0);
    rec->hub = hub;
    rec->mode = mode;
    rec->reports = reports;
    rec->threshold = threshold;
    rec->refcnt = 1;
    rec->thread_ident = PyThread_get_thread_ident();
    rec->thread = pthread_self();
#ifdef __linux__
    rec->thread_tid = (long)syscall(SYS_gettid);
#endif
    rec->has_cpu_clock = pthread_getcpuclockid(rec->thread, &rec->cpu_clock) == 0;
    rec->cpu_last = rec->cpu_since = -1.0;
    rec->since = rec->since_late = rec->last_sample = hm_clock_now();
    pthread_mutex_lock(&hm_sampler_lock);
    rec->id = ++S.next_id;
    pthread_mutex_unlock(&hm_sampler_lock);
    return rec;
}

/* Takes one more reference. Needs hm_sampler_lock NOT held. */
void
hm_record_incref(hm_record *rec)
{
    pthread_mutex_lock(&hm_sampler_lock);
    rec->refcnt++;
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Drops one reference; frees the record at zero. Needs hm_sampler_lock NOT
   held. */
void
hm_record_decref(hm_record *rec)
{
    pthread_mutex_lock(&hm_sampler_lock);
    int left = --rec->refcnt;
    pthread_mutex_unlock(&hm_sampler_lock);
    if (left == 0) {
        free(rec);
    }
}

/* The period between samples: threshold / 8 of the smallest threshold in
   the list, within [1 ms, 1 s]. Needs hm_sampler_lock. */
static double
current_period(void)
{
    double smallest = HUGE_VAL;
    for (hm_record *r = S.records; r != NULL; r = r->next) {
        if (r->threshold < smallest) {
            smallest = r->threshold;
        }
    }
    double period = smallest / HM_PERIOD_DIVISOR;
    if (period < HM_MIN_PERIOD) {
        period = HM_MIN_PERIOD;
    }
    if (period > HM_MAX_PERIOD) {
        period = HM_MAX_PERIOD;
    }
    return period;
}

/* The sampling period now in force, in seconds. Needs nothing. */
double
hm_sampler_period_get(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    double period = current_period();
    pthread_mutex_unlock(&hm_sampler_lock);
    return period;
}

/* Puts a block duration into the histogram. Needs hm_sampler_lock. */
static void
histogram_add(hm_record *rec, double seconds)
{
    double ms = seconds * 1000.0;
    int i = 0;
    while (i < HM_HIST_BUCKETS && ms > hm_hist_bounds_ms[i]) {
        i++;
    }
    rec->histogram[i]++;
}

/* Whether the switch that ended the record's stretch without progress
   stamped the time, and so when the stretch ended (*end, monotonic
   seconds). Valid only for the stretch a sample saw (seen_out_once) and
   only if the stamp is that of the first switch of progress after it: its
   count is the sample's plus one. Needs hm_sampler_lock. */
static int
stamped_end(const hm_record *rec, double now, double *end)
{
    if (!rec->seen_out_once) {
        return 0;
    }
    uint64_t stamp_count = atomic_load_explicit(&rec->stamp_count, memory_order_acquire);
    double at = atomic_load_explicit(&rec->progress_at, memory_order_relaxed);
    if (stamp_count != rec->seen + 1 || at < rec->last_sample || at > now) {
        return 0;
    }
    *end = at;
    return 1;
}

/* The seconds the native thread had held the GIL, handing events to
   Python, by the time t (monotonic seconds): exact for any t after the
   start of the HM_HELD_KEPT-th latest hand-over, which is all a stretch
   needs (a record is sampled after every hand-over). Needs
   hm_sampler_lock. */
static double
held_by(double t)
{
    double held = S.held_total;
    for (unsigned i = 1; i <= HM_HELD_KEPT; i++) {
        unsigned slot = (S.held_next + HM_HELD_KEPT - i) % HM_HELD_KEPT;
        double from = S.held_from[slot], length = S.held_length[slot];
        if (t >= from + length) {
            break;
        }
        held -= t > from ? from + length - t : length;
        if (t > from) {
            break;
        }
    }
    return held;
}

/* Remembers a hand-over that held the GIL for `length` seconds up to `end`.
   Needs hm_sampler_lock. */
static void
held_add(double end, double length)
{
    S.held_total += length;
    S.held_from[S.held_next] = end - length;
    S.held_length[S.held_next] = length;
    S.held_next = (S.held_next + 1) % HM_HELD_KEPT;
}

/* The seconds of the record's stretch without progress during which the
   native thread held the GIL to hand events to Python: time in which the
   program may have waited for hubmon, never counted against it. Needs
   hm_sampler_lock. */
static double
held_during_stretch(hm_record *rec)
{
    if (rec->held_since_for != rec->since) {
        rec->held_since_for = rec->since;
        rec->held_since = held_by(rec->since);
    }
    return S.held_total - rec->held_since;
}

/* The CPU time the record's thread has used, in seconds, or -1 when its
   clock cannot be read (the thread has ended, say: the clock names the
   thread by its id, and the kernel refuses the id of a thread that is gone
   or belongs to another process). Needs nothing. */
static double
thread_cpu(const hm_record *rec)
{
    struct timespec ts;
    if (!rec->has_cpu_clock || clock_gettime(rec->cpu_clock, &ts) != 0) {
        return -1.0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The base interval of a blockage's profile: threshold / 4, and never
   shorter than the sampling period. Needs hm_sampler_lock. */
static double
profile_interval(const hm_record *rec, double period)
{
    double base = rec->threshold / 4.0;
    if (base < period) {
        base = period;
    }
    /* Bounded in count: after every HM_PROFILE_DOUBLING samples the
       interval doubles (Python weighs each sample by the time since the
       previous one, so the shares stay true). */
    int doublings = rec->profile_taken / HM_PROFILE_DOUBLING;
    if (doublings > HM_PROFILE_MAX_DOUBLINGS) {
        doublings = HM_PROFILE_MAX_DOUBLINGS;
    }
    return ldexp(base, doublings);
}

/* How often a running hub's thread is looked at: every threshold, within
   [HM_MIN_LOOK, HM_MAX_PERIOD] (every sampling period once it is busy). */
static double
hub_look_interval(const hm_record *rec)
{
    double look = rec->threshold;
    return look < HM_MIN_LOOK ? HM_MIN_LOOK : look > HM_MAX_PERIOD ? HM_MAX_PERIOD : look;
}

/* What a look at a hub that has run since the last sample without a single
   switch finds: HM_HUB_BUSY (in a callback of its loop, not waiting for
   events) or HM_HUB_WAITING (in its loop's wait, epoll_wait or the like,
   or in a later iteration of its loop than at the last look, or not
   readable).

   Busy: still in the loop iteration of the last look (the prepare watcher
   that counts iterations runs before each wait for events), and the kernel
   shows its thread running, runnable, sleeping or waiting for I/O in a call
   that is not the loop's wait (a computation, time.sleep or a blocking read
   in a callback). A thread on a futex is not busy: one waiting for the GIL
   looks just the same (while hubmon's threads or the program's hold it),
   and a hub that cannot get the GIL is not stuck in a callback. Sets
   *iteration to the loop's iteration now.

   With `going_on` (a block of the hub is reported and not over), the
   futex means "still in the callback": hubmon's own captures and samples
   make the hub's thread wait for the GIL.

   An idle hub costs no /proc read: a thread whose CPU time has not moved
   at all since a look that found it in its loop's wait has not run since,
   so it is still there (sets *in_wait). Needs hm_sampler_lock (it holds it
   for the few microseconds of the /proc read, and only while a hub runs in
   one iteration without switching). */
static int
hub_look(const hm_record *rec, double cpu_now, uint64_t *iteration, int *in_wait,
         int going_on)
{
    *in_wait = 0;
    *iteration = atomic_load_explicit(&rec->loop_iterations, memory_order_relaxed);
    if (*iteration != rec->hub_look_iteration) {
        return HM_HUB_WAITING;      /* it went round its loop since */
    }
    if (rec->hub_look_waiting && cpu_now >= 0 && cpu_now == rec->hub_look_cpu) {
        *in_wait = 1;
        return HM_HUB_WAITING;      /* it has not run since it was seen waiting */
    }
    hm_kernel_view view;
    if (rec->thread_tid <= 0 || hm_kernel_view_read(rec->thread_tid, &view) != 0) {
        return HM_HUB_WAITING;
    }
    if (view.waits_for_events) {
        *in_wait = 1;
        return HM_HUB_WAITING;
    }
    if (view.kind == HM_CAUSE_LOCK && !going_on) {
        return HM_HUB_WAITING;
    }
    return HM_HUB_BUSY;
}

/* A new look at a running hub starts from here. Needs hm_sampler_lock. */
static void
hub_look_restart(hm_record *rec, double now, double cpu_now)
{
    rec->hub_idle_at = now;
    rec->hub_idle_cpu = cpu_now;
    rec->hub_busy_at = 0;
    rec->hub_look_time = now;
    rec->hub_look_cpu = cpu_now;
    rec->hub_look_iteration = atomic_load_explicit(&rec->loop_iterations, memory_order_relaxed);
    rec->hub_look_waiting = 0;
    rec->hub_look_at = now + hub_look_interval(rec);
}

/* Looks at a hub that has run since the last sample without a switch:
   fills `ev` and returns 1 when it has been busy (not waiting for events)
   for the threshold, else returns 0. Needs hm_sampler_lock. */
static int
look_at_hub(hm_record *rec, double now, double cpu_now, hm_event *ev)
{
    if (now < rec->hub_look_at) {
        return 0;
    }
    uint64_t iteration;
    int in_wait;
    int found = hub_look(rec, cpu_now, &iteration, &in_wait, 0);
    rec->hub_look_time = now;
    rec->hub_look_cpu = cpu_now;
    rec->hub_look_iteration = iteration;
    rec->hub_look_waiting = in_wait;
    rec->hub_look_at = now + hub_look_interval(rec);
    if (found == HM_HUB_WAITING) {
        rec->hub_idle_at = now;
        rec->hub_idle_cpu = cpu_now;
        rec->hub_busy_at = 0;
        return 0;
    }
    if (rec->hub_busy_at == 0) {
        /* It became busy between the last look that found it waiting and
           this one; no later than the CPU time it has used since says (its
           clock stood still while it waited). That latest start is the
           estimate: a callback is never taken for longer than it is, and a
           computing one is timed nearly exactly; one that sleeps or waits
           for I/O is seen up to a look interval late. */
        rec->hub_busy_at = now;
        double ran = cpu_now >= 0 && rec->hub_idle_cpu >= 0 ? cpu_now - rec->hub_idle_cpu : 0.0;
        double start = now - (ran > 0 ? ran : 0.0);
        rec->hub_busy_from = start > rec->hub_idle_at ? start : rec->hub_idle_at;
        /* Its duration, once reported, counts from the best estimate: that
           start when the CPU time tells (a callback that computes), else
           the middle of the two looks (one that sleeps or waits). */
        rec->hub_busy_est = ran >= HM_BUSY_CPU_SHARE * (now - rec->hub_idle_at)
            ? rec->hub_busy_from : (rec->hub_idle_at + now) / 2;
    }
    /* While it is busy, it is looked at every sampling period. */
    rec->hub_look_at = now + current_period();
    double gap = now - rec->hub_busy_from;
    if (!rec->reports || rec->ignoring || rec->blocked || gap < rec->threshold) {
        return 0;
    }
    rec->blocked = 1;
    rec->hub_blocked = 1;
    rec->blocks++;
    rec->since = rec->since_late = rec->hub_busy_est;
    rec->profile_taken = 0;
    rec->profile_pending = 0;
    rec->next_profile = now + profile_interval(rec, current_period());
    memset(ev, 0, sizeof(*ev));
    ev->kind = HM_EVENT_BLOCKED;
    ev->value = now - rec->hub_busy_est;
    ev->current = rec->hub;
    ev->switches = atomic_load_explicit(&rec->switches, memory_order_relaxed);
    ev->hub_itself = 1;
    ev->cpu_since_at = rec->hub_idle_at;
    gap = now - rec->hub_idle_at;       /* the CPU time below covers this */
    if (cpu_now >= 0 && rec->hub_idle_cpu >= 0) {
        ev->cpu_time = cpu_now - rec->hub_idle_cpu;
        ev->cpu_ratio = ev->cpu_time / gap;
    }
    else {
        ev->cpu_time = ev->cpu_ratio = -1.0;
    }
    return 1;
}

/* Ends a reported block of the hub itself when the hub switched, stopped
   running or waits for events again; fills `ev` and returns 1 then, else
   returns 0. Needs hm_sampler_lock. */
static int
sample_hub_block(hm_record *rec, double now, int fine, uint64_t count, double cpu_now,
                 hm_event *ev)
{
    if (fine && count == rec->seen) {
        /* Still running without a switch: judged again at each look. */
        rec->last_sample = now;
        uint64_t iteration;
        int in_wait;
        if (now < rec->hub_look_at
                || hub_look(rec, cpu_now, &iteration, &in_wait, 1) == HM_HUB_BUSY) {
            if (now >= rec->hub_look_at) {
                /* Looked at every sampling period while the block lasts,
                   so that its end is known to within one. */
                rec->hub_look_time = now;
                rec->hub_look_cpu = cpu_now;
                rec->hub_look_at = now + current_period();
            }
            return 0;
        }
        /* Back in its loop's wait: the block is over. */
    }
    /* Ended between the last look and now; began between the last idle look
       and the first busy one. Take the middle of what is known. */
    double lower = rec->hub_look_time - rec->since_late, upper = now - rec->since;
    double stretch = (lower + upper) / 2;
    rec->blocked = 0;
    rec->hub_blocked = 0;
    if (stretch > rec->longest_block) {
        rec->longest_block = stretch;
    }
    histogram_add(rec, stretch);
    memset(ev, 0, sizeof(*ev));
    ev->kind = HM_EVENT_UNBLOCKED;
    ev->value = stretch;
    rec->seen = count;
    rec->since = rec->since_late = rec->last_sample = now;
    rec->seen_out_once = 0;
    rec->cpu_since = rec->cpu_last = cpu_now;
    rec->cpu_since_at = now;
    hub_look_restart(rec, now, cpu_now);
    rec->fine_last = 0;
    return 1;
}

/* Samples one record at time `now`; fills `ev` and returns 1 when Python must
   hear about it, else returns 0. Needs hm_sampler_lock. */
static int
sample_record(hm_record *rec, double now, hm_event *ev)
{
    /* Relaxed loads: a stale value delays detection by one period at most. */
    uint64_t all = atomic_load_explicit(&rec->switches, memory_order_relaxed);
    uint64_t count = rec->mode == HM_MODE_HUB
        ? atomic_load_explicit(&rec->hub_switches, memory_order_relaxed) : all;
    int fine = rec->mode == HM_MODE_HUB
        && atomic_load_explicit(&rec->hub_running, memory_order_relaxed);
    int emit = 0;

    if (rec->tracers == 0) {
        /* No trace function counts into it (the program dropped hubmon's,
           or it is not installed yet): nothing here can be judged. It is
           judged afresh once a tracer counts again. */
        rec->blind = 1;
        rec->blind_switches = all;
        rec->last_sample = now;
        rec->fine_last = 0;
        return 0;
    }
    double cpu_now = thread_cpu(rec);
    if (rec->blind) {
        if (all == rec->blind_switches) {
            /* The tracer is still not called: nothing here can be judged. */
            rec->last_sample = now;
            return 0;
        }
        /* The tracer sees switches again: start afresh from this sample. */
        rec->blind = 0;
        rec->seen = count;
        rec->since = rec->since_late = rec->last_sample = now;
        rec->seen_out_once = 0;
        rec->cpu_since = rec->cpu_last = cpu_now;
        rec->cpu_since_at = now;
        rec->fine_last = 0;
        return 0;
    }
    if (rec->ignoring && all != rec->ignored_switches) {
        rec->ignoring = 0;      /* the ignored greenlet switched away */
    }
    if (rec->hub_blocked) {
        return sample_hub_block(rec, now, fine, count, cpu_now, ev);
    }
    if (fine || count != rec->seen) {
        /* The stretch without progress has ended, somewhere between the
           previous sample and this one, or exactly when the switch that
           ended it says (stamped_end). Take the middle of what is known. */
        atomic_store_explicit(&rec->stamp_armed, 0, memory_order_relaxed);
        double lower = rec->last_sample - rec->since_late, upper = now - rec->since;
        double end = now;
        if (stamped_end(rec, now, &end)) {
            lower = end - rec->since_late;
            upper = end - rec->since;
            if (lower > rec->longest_gap) {
                rec->longest_gap = lower;
            }
        }
        double stretch = (lower + upper) / 2;
        int stamped = stamped_end(rec, now, &end);
        if (rec->blocked) {
            rec->blocked = 0;
            if (stretch > rec->longest_block) {
                rec->longest_block = stretch;
            }
            memset(ev, 0, sizeof(*ev));
            ev->kind = HM_EVENT_UNBLOCKED;
            ev->value = stretch;
            emit = 1;
        }
        if (rec->seen_out_once) {
            histogram_add(rec, stretch);
        }
        /* A hub that ran through the whole interval without one switch is
           looked at: it may be stuck in a callback of its own. */
        int ran_through = fine && rec->fine_last && count == rec->seen;
        rec->seen_before = rec->seen;
        rec->seen = count;
        /* A new stretch starts after this sample if the hub runs now, else
           it started between the previous sample and this one: after the
           switch that ended the old stretch, when it stamped the time. When
           the previous sample is long past (this thread was handing an event
           to Python, waiting for a GIL that a C call held), and nothing
           stamped, its start is not known: it is judged from now, so that
           the wait is never counted as part of a new stretch. The stamp is
           the new stretch's start only if its switch was the only one: after
           a long hand-over, a stretch that began at some later switch is
           judged from now too. */
        double since = rec->last_sample;
        if (stamped && end > since && (!S.held_up || count == rec->seen_before + 1)) {
            since = end;
        }
        else if (S.held_up && now - rec->last_sample > HM_STALE_SAMPLES * current_period()) {
            since = now;
        }
        double previous_sample = since;
        rec->since = fine ? now : since;
        rec->since_late = now;
        rec->seen_out_once = 0;
        int cpu_known = fine || since == rec->last_sample;
        rec->cpu_since = fine ? cpu_now : cpu_known ? rec->cpu_last : -1.0;
        rec->cpu_since_at = fine ? now : rec->last_sample;
        rec->cpu_last = cpu_now;
        rec->last_sample = now;
        if (ran_through && !emit && rec->mode == HM_MODE_HUB
                && atomic_load_explicit(&rec->loop_counted, memory_order_relaxed)) {
            emit = look_at_hub(rec, now, cpu_now, ev);
        }
        else if (!ran_through) {
            hub_look_restart(rec, now, cpu_now);
            if (fine && count != rec->seen_before) {
                /* It switched into the hub since the previous sample: the
                   hub may have been busy from then on. (The CPU time still
                   counts from now, so a callback is never taken for longer
                   than it is.) */
                rec->hub_idle_at = previous_sample;
            }
        }
        rec->fine_last = fine;
        return emit;
    }

    /* No progress: the gap is at least now - since_late and at most
       now - since. Blocks are judged by the upper bound so that none longer
       than the threshold is missed; assertion scopes by the lower bound so
       that a body that switches in time never fails. */
    double gap = now - rec->since;
    double gap_late = now - rec->since_late;
    double held = held_during_stretch(rec);
    rec->last_sample = now;
    rec->seen_out_once = 1;
    rec->fine_last = 0;
    if (rec->cpu_since < 0) {
        rec->cpu_since = cpu_now;
        rec->cpu_since_at = now;
    }
    rec->cpu_last = cpu_now;
    atomic_store_explicit(&rec->stamp_armed, 1, memory_order_relaxed);
    if (gap_late > rec->longest_gap) {
        rec->longest_gap = gap_late;
    }
    if (rec->reports && !rec->ignoring && !rec->blocked && gap - held >= rec->threshold) {
        rec->blocked = 1;
        rec->blocks++;
        rec->profile_taken = 0;
        rec->profile_pending = 0;
        rec->next_profile = now + profile_interval(rec, current_period());
        memset(ev, 0, sizeof(*ev));
        ev->kind = HM_EVENT_BLOCKED;
        ev->value = gap;
        ev->current = atomic_load_explicit(&rec->current, memory_order_relaxed);
        ev->switches = all;
        if (cpu_now >= 0 && rec->cpu_since >= 0) {
            ev->cpu_time = cpu_now - rec->cpu_since;
            ev->cpu_ratio = now > rec->cpu_since_at
                ? ev->cpu_time / (now - rec->cpu_since_at) : -1.0;
        }
        else {
            ev->cpu_time = ev->cpu_ratio = -1.0;
        }
        ev->cpu_since_at = rec->cpu_since_at;
        emit = 1;
    }
    return emit;
}

/* Reads the resident set size from /proc/self/statm. Needs nothing.
   Returns bytes, or -1 when it cannot be read (not Linux, no /proc). */
static double
read_rss(void)
{
#ifdef __linux__
    FILE *f = fopen("/proc/self/statm", "re");
    if (f == NULL) {
        return -1.0;
    }
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2) {
        return -1.0;
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
#else
    return -1.0;
#endif
}

/* Fills `ev` from the record's fixed facts. Needs hm_sampler_lock. */
static void
event_from_record(hm_event *ev, const hm_record *rec)
{
    ev->record_id = rec->id;
    ev->thread_ident = rec->thread_ident;
    ev->thread_tid = rec->thread_tid;
    ev->gil_dump = rec->gil_dump;
}

/* The sampled record with this id, or NULL. Needs hm_sampler_lock. */
static hm_record *
find_record(int64_t id)
{
    for (hm_record *r = S.records; r != NULL; r = r->next) {
        if (r->id == id) {
            return r;
        }
    }
    return NULL;
}

/* Acts on what became of one event. Needs hm_sampler_lock. */
static void
apply_outcome(const hm_event *ev, int outcome)
{
    hm_record *rec = find_record(ev->record_id);
    switch (ev->kind) {
    case HM_EVENT_BLOCKED:
        if (outcome == HM_OUTCOME_REJECTED && rec != NULL) {
            /* Python saw that the counters are stale (the running greenlet
               is not the one the tracer last saw): no block was reported,
               and none is judged until the tracer is called again. */
            rec->blocked = 0;
            if (rec->blocks > 0) {
                rec->blocks--;
            }
            rec->blind = 1;
            rec->blind_switches = ev->switches;
        }
        break;
    case HM_EVENT_CALL:
        /* When delivered, Python acknowledges with hm_record_call_done(). */
        if (outcome == HM_OUTCOME_NOT_DELIVERED && rec != NULL) {
            rec->call_pending = 0;
            rec->next_call = hm_clock_now() + HM_RETRY_DELAY;
        }
        break;
    case HM_EVENT_SAMPLE:
        if (rec != NULL) {
            rec->profile_pending = 0;
            rec->profile_taken++;
            rec->next_profile = hm_clock_now() + profile_interval(rec, current_period());
        }
        break;
    case HM_EVENT_MEMORY:
        /* When delivered, Python acknowledges with hm_sampler_memory_done(). */
        if (outcome == HM_OUTCOME_NOT_DELIVERED) {
            S.mem_pending = 0;
        }
        break;
    default:
        break;
    }
}

/* Whether the thread may doze: every record watches a hub that is running
   now (waiting in its loop, say), so nothing can be blocked until some hub
   switches out, and the tracer wakes the thread at that switch. Sets
   hm_dozing first and then reads the records again, so that a switch that
   raced with the decision is seen by one side or the other. Needs
   hm_sampler_lock. */
static int
may_doze(void)
{
    if (S.records == NULL) {
        return 0;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (hm_record *r = S.records; r != NULL; r = r->next) {
            if (r->mode != HM_MODE_HUB || r->blocked || r->blind || r->hub_busy_at > 0
                    || !atomic_load(&r->hub_running)) {
                atomic_store(&hm_dozing, 0);
                return 0;
            }
        }
        atomic_store(&hm_dozing, 1);
    }
    return 1;
}

/* How long a doze may last: long enough to cost nothing, short enough that
   a switch whose wake-up was lost in a race is still reported late by at
   most a few thresholds. */
static double
doze_length(double period)
{
    double length = period * HM_PERIOD_DIVISOR * 4;
    length = length < 0.05 ? 0.05 : length > 2.0 ? 2.0 : length;
    /* A running hub is looked at now and then: it may be stuck in a
       callback of its own, which no switch would tell. */
    for (hm_record *r = S.records; r != NULL; r = r->next) {
        /* (Its loop's iterations may be counted from the next moment on.) */
        if (r->reports && r->mode == HM_MODE_HUB && r->hub != 0
                && hub_look_interval(r) < length) {
            length = hub_look_interval(r);
        }
    }
    return length;
}

/* The stretches start now, for every record. Needs hm_sampler_lock. */
static void
restart_stretches(double now)
{
    for (hm_record *r = S.records; r != NULL; r = r->next) {
        r->since = r->since_late = r->last_sample = now;
        r->seen_out_once = 0;
        r->cpu_since = -1.0;
        r->fine_last = 0;
    }
}

/* Called by the tracer, holding the GIL, at the first switch away from a hub
   while the thread dozes: wakes it. Takes hm_sampler_lock briefly (the lock
   order, GIL then lock, holds) and reads the clock once per doze. */
void
hm_sampler_poke(void)
{
    if (atomic_exchange(&hm_dozing, 0)) {
        pthread_mutex_lock(&hm_sampler_lock);
        /* During the doze every hub ran until this switch: restart the
           stretches now, before the switch goes on, so that anything reading
           the records (stats(), assert_switches) sees a stretch that starts
           here. */
        restart_stretches(hm_clock_now());
        if (S.cond_ready) {
            pthread_cond_signal(&S.cond);
        }
        pthread_mutex_unlock(&hm_sampler_lock);
    }
}

/* Converts a monotonic deadline in seconds to a timespec. */
static struct timespec
to_timespec(double deadline)
{
    struct timespec ts;
    ts.tv_sec = (time_t)deadline;
    ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (ts.tv_nsec < 0) {
        ts.tv_nsec = 0;
    }
    return ts;
}

/* Collects the events of one pass at time `now` into `events` (at most
   HM_MAX_EVENTS); sets *more when some had to wait. Needs hm_sampler_lock. */
static int
collect_events(double now, hm_event *events, int *more)
{
    int count = 0;
    *more = 0;
    for (hm_record *r = S.records; r != NULL; r = r->next) {
        if (count >= HM_MAX_EVENTS - 3) {
            *more = 1;
            break;
        }
        if (sample_record(r, now, &events[count])) {
            event_from_record(&events[count], r);
            count++;
        }
        if (r->blocked && !r->profile_pending && now >= r->next_profile) {
            r->profile_pending = 1;
            memset(&events[count], 0, sizeof(hm_event));
            events[count].kind = HM_EVENT_SAMPLE;
            events[count].value = profile_interval(r, current_period());
            event_from_record(&events[count], r);
            events[count].gil_dump = 0;     /* one stack dump per block */
            count++;
        }
        if (r->next_call > 0 && now >= r->next_call && !r->call_pending) {
            r->call_pending = 1;
            memset(&events[count], 0, sizeof(hm_event));
            events[count].kind = HM_EVENT_CALL;
            event_from_record(&events[count], r);
            count++;
        }
    }
    if (S.mem_limit > 0 && now >= S.mem_next && !S.mem_pending && count < HM_MAX_EVENTS) {
        S.mem_next = now + S.mem_period;
        double rss = read_rss();
        /* The resident set bounds the unique set size from above, so when it
           is under the limit and nothing was exceeded before, there is
           nothing to tell and no need for the GIL. */
        if (rss < 0 || rss > S.mem_limit || S.mem_exceeded) {
            S.mem_pending = 1;
            memset(&events[count], 0, sizeof(hm_event));
            events[count].kind = HM_EVENT_MEMORY;
            events[count].value = rss;
            count++;
        }
    }
    return count;
}

/* Records in a garbage-collection pass starting (1) or ending (0); called
   by gc.callbacks through module.c, holding the GIL. */
void
hm_gc_phase_set(int started, int generation)
{
    atomic_store(&gc_generation, generation);
    atomic_store(&gc_thread, started ? PyThread_get_thread_ident() : 0UL);
}

/* Fills the cause of a BLOCKED event: a garbage-collection pass running in
   the hub's thread, else what the kernel shows the thread doing, with its
   CPU time. The GIL is judged later, by Python, from the wait for it.
   Needs neither the GIL nor hm_sampler_lock. */
static void
find_cause(hm_event *ev)
{
    if (atomic_load(&gc_thread) == ev->thread_ident) {
        ev->cause = HM_CAUSE_GC;
        snprintf(ev->detail, sizeof(ev->detail),
                 "a garbage-collection pass of generation %d", atomic_load(&gc_generation));
        return;
    }
    hm_kernel_view view;
    memset(&view, 0, sizeof(view));
    snprintf(view.detail, sizeof(view.detail), "the thread's kernel id is not known");
    if (ev->thread_tid <= 0 || hm_kernel_view_read(ev->thread_tid, &view) != 0) {
        /* The kernel could not tell; the CPU clock may still. */
        ev->cause = ev->cpu_ratio >= HM_BUSY_CPU_SHARE ? HM_CAUSE_CPU : HM_CAUSE_UNKNOWN;
        snprintf(ev->detail, sizeof(ev->detail), "%s", view.detail);
        return;
    }
    ev->cause = view.kind;
    memcpy(ev->detail, view.detail, sizeof(ev->detail));
    ev->detail[sizeof(ev->detail) - 1] = '\0';
}

/* The body of the native thread. Holds hm_sampler_lock except while it
   sleeps and while callbacks.c runs; never holds a Python object. */
static void *
sampler_main(void *unused)
{
    (void)unused;
    hm_event events[HM_MAX_EVENTS];
    int outcomes[HM_MAX_EVENTS];
#ifdef __linux__
    long tid = (long)syscall(SYS_gettid);
#else
    long tid = 0;
#endif
#if defined(__linux__) && defined(_GNU_SOURCE)
    pthread_setname_np(pthread_self(), "hubmon");
#endif

    pthread_mutex_lock(&hm_sampler_lock);
    S.native_id = tid;
    while (!S.stop_requested) {
        int more = 0;
        int count = collect_events(hm_clock_now(), events, &more);
        S.held_up = 0;
        if (count > 0) {
            /* Set under the same hold of the lock that decided the events:
               whoever sees their effect on a record (its blocks count) sees
               them in flight too, until the outcomes are applied. */
            S.dispatching = count;
            double handed_at = hm_clock_now();
            pthread_mutex_unlock(&hm_sampler_lock);
            for (int i = 0; i < count; i++) {
                if (events[i].kind == HM_EVENT_BLOCKED) {
                    find_cause(&events[i]);
                }
            }
            double held = 0.0;
            for (int i = 0; i < count; i++) {
                double one;
                outcomes[i] = hm_callback_dispatch(&events[i], &one);
                held += one;
            }
            pthread_mutex_lock(&hm_sampler_lock);
            held_add(hm_clock_now(), held);
            for (int i = 0; i < count; i++) {
                apply_outcome(&events[i], outcomes[i]);
            }
            S.dispatching = 0;
            /* Sampling stopped meanwhile: the next pass must not take the
               hold-up for part of a stretch (sample_record). */
            S.held_up = hm_clock_now() - handed_at > HM_STALE_SAMPLES * current_period();
            if (more) {
                continue;
            }
        }

        double period = current_period();
        int dozing = count == 0 && may_doze();
        double deadline = hm_clock_now() + (dozing ? doze_length(period) : period);
        for (hm_record *r = S.records; r != NULL; r = r->next) {
            if (r->next_call > 0 && !r->call_pending && r->next_call < deadline) {
                deadline = r->next_call;
            }
        }
        if (S.mem_limit > 0 && !S.mem_pending && S.mem_next < deadline) {
            deadline = S.mem_next;
        }
        struct timespec ts = to_timespec(deadline);
        if (!S.stop_requested) {
            pthread_cond_timedwait(&S.cond, &hm_sampler_lock, &ts);
        }
        if (dozing) {
            /* A wake-up by the tracer has restarted the stretches already.
               After a timeout the normal sample decides: a hub still running
               restarts its stretch; a hub that switched away without waking
               the thread (the rare race of the tracer's relaxed read) is
               judged from the sample before the doze, an upper bound, so its
               block is not missed. */
            atomic_store(&hm_dozing, 0);
        }
    }
    int give_back = !S.joined_with_gil;
    pthread_mutex_unlock(&hm_sampler_lock);
    /* Give back the Python thread state kept for the thread's whole life,
       unless the thread that joins this one holds the GIL. */
    hm_callback_thread_exit(give_back);
    return NULL;
}

/* Starts the native thread unless it runs. Needs hm_sampler_lock.
   Returns 0, or -1 when the thread cannot be created (or hubmon has shut
   down for good). */
static int
start_locked(void)
{
    if (S.thread_exists) {
        return 0;
    }
    if (S.shut_down) {
        return -1;
    }
    if (!S.cond_ready && cond_init() != 0) {
        return -1;
    }
    /* The thread blocks every signal: signals meant for the program must
       reach the program's own threads. It inherits this mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    S.stop_requested = 0;
    S.pid = getpid();
    int rc = pthread_create(&S.thread, NULL, sampler_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        return -1;
    }
    S.thread_exists = 1;
    atomic_store(&hm_resume_pending, 0);
    return 0;
}

/* Starts the native thread unless it runs. Needs nothing.
   Returns 0, or -1 when the thread cannot be created. */
int
hm_sampler_start(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    int rc = start_locked();
    pthread_mutex_unlock(&hm_sampler_lock);
    return rc;
}

/* Called by the tracer, holding the GIL, at a switch into a hub while
   hm_resume_pending is set (a forked child whose hub now runs): restarts the
   native thread with every stretch starting now. Never fails loudly: a
   thread that cannot start leaves the child unmonitored. */
void
hm_sampler_resume(void)
{
    if (atomic_exchange(&hm_resume_pending, 0)) {
        pthread_mutex_lock(&hm_sampler_lock);
        double now = hm_clock_now();
        restart_stretches(now);
        S.mem_next = now + S.mem_period;
        if (S.records != NULL || S.mem_limit > 0) {
            (void)start_locked();
        }
        pthread_mutex_unlock(&hm_sampler_lock);
    }
}

/* Adds a record to the sampled list (taking a reference) and starts the
   thread. Needs hm_sampler_lock NOT held. Returns 0, or -1 when the thread
   cannot start (the record is then not in the list). */
int
hm_sampler_add(hm_record *rec)
{
    pthread_mutex_lock(&hm_sampler_lock);
    int rc = start_locked();
    if (rc == 0 && !rec->active) {
        rec->refcnt++;
        rec->active = 1;
        rec->blocked = 0;
        rec->blind = 0;
        rec->seen = rec->mode == HM_MODE_HUB
            ? atomic_load(&rec->hub_switches) : atomic_load(&rec->switches);
        rec->since = rec->since_late = rec->last_sample = hm_clock_now();
        rec->next = S.records;
        S.records = rec;
        if (S.cond_ready) {
            pthread_cond_signal(&S.cond);
        }
    }
    pthread_mutex_unlock(&hm_sampler_lock);
    return rc;
}

/* Takes a record out of the sampled list, dropping the list's reference.
   Needs hm_sampler_lock NOT held. Does nothing if it is not in the list. */
void
hm_sampler_remove(hm_record *rec)
{
    int drop = 0;
    pthread_mutex_lock(&hm_sampler_lock);
    if (rec->active) {
        hm_record **link = &S.records;
        while (*link != NULL && *link != rec) {
            link = &(*link)->next;
        }
        if (*link == rec) {
            *link = rec->next;
        }
        rec->next = NULL;
        rec->active = 0;
        drop = 1;
    }
    pthread_mutex_unlock(&hm_sampler_lock);
    if (drop) {
        hm_record_decref(rec);
    }
}

/* Wakes the thread so it recomputes its deadline. Needs hm_sampler_lock. */
static void
wake_locked(void)
{
    if (S.cond_ready) {
        pthread_cond_signal(&S.cond);
    }
}

/* Copies the record's figures. With `finish`, the stretch without progress
   still going on counts toward longest_gap (its lower bound, like the
   others). Needs hm_sampler_lock NOT held. */
void
hm_record_figures_get(hm_record *rec, int finish, hm_record_figures *out)
{
    double now = hm_clock_now();
    pthread_mutex_lock(&hm_sampler_lock);
    out->switches = atomic_load(&rec->switches);
    out->hub_switches = atomic_load(&rec->hub_switches);
    uint64_t count = rec->mode == HM_MODE_HUB ? out->hub_switches : out->switches;
    int fine = rec->mode == HM_MODE_HUB && atomic_load(&rec->hub_running);
    out->longest_gap = rec->longest_gap;
    if (finish && !fine && count == rec->seen && now - rec->since_late > out->longest_gap) {
        out->longest_gap = now - rec->since_late;
    }
    double end;
    if (finish && count != rec->seen && stamped_end(rec, now, &end)
            && end - rec->since_late > out->longest_gap) {
        /* The stretch has ended and no sample has seen it end yet (the
           native thread was waiting for the GIL, say): its stamp tells. */
        out->longest_gap = end - rec->since_late;
    }
    out->blocks = rec->blocks;
    out->longest_block = rec->longest_block;
    out->blocked_now = rec->blocked;
    out->current_block = rec->blocked ? now - rec->since : 0.0;
    out->threshold = rec->threshold;
    memcpy(out->histogram, rec->histogram, sizeof(out->histogram));
    pthread_mutex_unlock(&hm_sampler_lock);
    if (out->current_block > out->longest_block) {
        out->longest_block = out->current_block;
    }
}

/* Changes the threshold (seconds, checked by the caller). Needs the lock NOT
   held. */
void
hm_record_threshold_set(hm_record *rec, double threshold)
{
    pthread_mutex_lock(&hm_sampler_lock);
    rec->threshold = threshold;
    wake_locked();
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* ignore_current() (1) and monitor_current() (0). Needs the lock NOT held. */
void
hm_record_ignore_set(hm_record *rec, int ignoring)
{
    pthread_mutex_lock(&hm_sampler_lock);
    rec->ignoring = ignoring;
    rec->ignored_switches = atomic_load(&rec->switches);
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Asks for a CALL event at monotonic time `when` (0 cancels), unless one is
   being handled: its acknowledgement sets the next time. Needs the lock NOT
   held. */
void
hm_record_next_call_set(hm_record *rec, double when)
{
    pthread_mutex_lock(&hm_sampler_lock);
    if (!rec->call_pending) {
        rec->next_call = when;
    }
    wake_locked();
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Python has run the monitoring functions of this record; they are next due
   at `next_call` (0 = none). Needs the lock NOT held. */
void
hm_record_call_done(hm_record *rec, double next_call)
{
    pthread_mutex_lock(&hm_sampler_lock);
    rec->next_call = next_call;
    rec->call_pending = 0;
    wake_locked();
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Whether this record's blocks arm the GIL stack dump. Needs the lock NOT
   held. */
void
hm_record_gil_dump_set(hm_record *rec, int on)
{
    pthread_mutex_lock(&hm_sampler_lock);
    rec->gil_dump = on;
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* A thread tracer starts (+1) or stops (-1) counting into this record.
   Needs the lock NOT held. */
void
hm_record_tracers_add(hm_record *rec, int delta)
{
    pthread_mutex_lock(&hm_sampler_lock);
    rec->tracers += delta;
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Joins `thread`, waiting HM_EXIT_PATIENCE seconds at most. Returns 0 when
   it was joined, -1 when it is still running (it is then detached). */
static int
join_with_patience(pthread_t thread)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += HM_EXIT_PATIENCE;
    if (pthread_timedjoin_np(thread, NULL, &deadline) == 0) {
        return 0;
    }
    pthread_detach(thread);
    return -1;
#else
    pthread_join(thread, NULL);
    return 0;
#endif
}

/* Asks the native thread to stop for good: the interpreter is exiting.
   Called holding the GIL, and hm_sampler_lock NOT held. Returns 1 when the
   thread is handing events to Python (it may be waiting for the GIL): it
   must then be joined WITHOUT the GIL, and it gives back its thread state.
   Returns 0 otherwise: it can no longer call into Python (it checks the stop
   under the lock before it hands anything over), so the caller joins it
   holding the GIL, and no other thread of the program runs meanwhile, and
   the interpreter frees its thread state as it finalizes. (A daemon thread
   that ran then could be inside a greenlet when the interpreter ends it,
   which greenlet does not survive.) */
int
hm_sampler_stop_for_good(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    S.shut_down = 1;
    atomic_store(&hm_resume_pending, 0);
    int handing_over = S.thread_exists && S.dispatching > 0;
    if (S.thread_exists) {
        S.stop_requested = 1;
        S.joined_with_gil = !handing_over;
        pthread_cond_signal(&S.cond);
    }
    pthread_mutex_unlock(&hm_sampler_lock);
    return handing_over;
}

/* Joins the native thread after hm_sampler_stop_for_good, with or without
   the GIL as that said. Needs hm_sampler_lock NOT held. A thread held up by
   user code of a capture (a repr that waits) is waited for
   HM_EXIT_PATIENCE seconds, then left like a daemon thread: it never calls
   into Python again once it sees the stop (and the interpreter ends a
   thread that asks for the GIL while it finalizes). */
void
hm_sampler_join_for_good(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    if (!S.thread_exists) {
        pthread_mutex_unlock(&hm_sampler_lock);
        return;
    }
    pthread_t thread = S.thread;
    pthread_mutex_unlock(&hm_sampler_lock);
    (void)join_with_patience(thread);
    pthread_mutex_lock(&hm_sampler_lock);
    S.thread_exists = 0;
    S.native_id = 0;
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Whether a stop was asked for: callbacks.c checks it after it gets the
   GIL, so that a thread being joined does not call into Python. */
int
hm_sampler_is_stopping(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    int stopping = S.stop_requested;
    pthread_mutex_unlock(&hm_sampler_lock);
    return stopping;
}

/* The process the native thread was started in. Needs nothing. */
pid_t
hm_sampler_pid_get(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    pid_t pid = S.pid;
    pthread_mutex_unlock(&hm_sampler_lock);
    return pid;
}

/* Whether the native thread exists. Needs nothing. */
int
hm_sampler_is_running(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    int running = S.thread_exists;
    pthread_mutex_unlock(&hm_sampler_lock);
    return running;
}

/* How many events the native thread has decided and is handing to Python
   (or waiting for the GIL to hand), plus the ends of reported blocks that
   the next sample will hand over: 0 when none. Needs nothing. */
int
hm_sampler_dispatching_get(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    int dispatching = S.dispatching;
    /* A reported block whose hub has made progress since: its end is
       detected, and EventLoopUnblocked handed over, at the next sample. */
    for (hm_record *r = S.records; r != NULL; r = r->next) {
        if (!r->blocked) {
            continue;
        }
        uint64_t count = r->mode == HM_MODE_HUB
            ? atomic_load_explicit(&r->hub_switches, memory_order_relaxed)
            : atomic_load_explicit(&r->switches, memory_order_relaxed);
        int running = r->mode == HM_MODE_HUB
            && atomic_load_explicit(&r->hub_running, memory_order_relaxed);
        /* A block of the hub itself ends when the hub stops running (or
           waits for events again, which only a sample can tell). */
        if (count != r->seen || (r->hub_blocked ? !running : running)) {
            dispatching++;
        }
    }
    pthread_mutex_unlock(&hm_sampler_lock);
    return dispatching;
}

/* Whether hubmon has shut down for good. Needs nothing. */
int
hm_sampler_is_shut_down(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    int down = S.shut_down;
    pthread_mutex_unlock(&hm_sampler_lock);
    return down;
}

/* The kernel thread id of the native thread, or 0. Needs nothing. */
long
hm_sampler_native_id_get(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    long tid = S.native_id;
    pthread_mutex_unlock(&hm_sampler_lock);
    return tid;
}

/* Sets the process-wide memory watch: limit in bytes (0 turns it off) and
   the period in seconds. When the watch starts, the first check comes at
   the next sample, as gevent's monitor checks at its next wake-up; a later
   change keeps the checks' pace (a subscriber that changes the limit on
   each event cannot make them run back to back), except that a shorter
   period applies from now. Needs hm_sampler_lock NOT held. */
void
hm_sampler_memory_set(double limit_bytes, double period)
{
    pthread_mutex_lock(&hm_sampler_lock);
    double now = hm_clock_now();
    if (S.mem_limit <= 0) {
        S.mem_next = now;
    }
    else if (S.mem_next > now + period) {
        S.mem_next = now + period;
    }
    S.mem_limit = limit_bytes;
    S.mem_period = period;
    /* mem_exceeded survives a limit of 0 (no watch): a limit set again
       later checks at once and, under it, ends the run of exceeded events
       with MemoryUsageUnderThreshold, as gevent's monitor does. */
    wake_locked();
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Python reports what it found after a memory event: 1 over the limit,
   0 under it, -1 unknown (keep the last state). Needs the lock NOT held. */
void
hm_sampler_memory_done(int exceeded)
{
    pthread_mutex_lock(&hm_sampler_lock);
    if (exceeded >= 0) {
        S.mem_exceeded = exceeded;
    }
    S.mem_pending = 0;
    wake_locked();      /* it may sleep past the next measurement otherwise */
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* pthread_atfork handlers. The prepare handler runs in the forking thread
   (holding the GIL, the right lock order), so the lock is never copied into
   the child while another thread holds it. */
void
hm_sampler_atfork_prepare(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
}

void
hm_sampler_atfork_parent(void)
{
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* In the child only the forking thread exists: the native thread is gone,
   with its Python thread state, and its condition variable may be in any
   state. Async-signal-safe work only. */
void
hm_sampler_atfork_child(void)
{
    pthread_mutex_unlock(&hm_sampler_lock);
    S.thread_exists = 0;
    S.stop_requested = 0;
    S.dispatching = 0;
    S.native_id = 0;
    atomic_store(&hm_dozing, 0);
    atomic_store(&hm_resume_pending, 0);
    S.mem_pending = 0;
    S.cond_ready = 0;
    cond_init();
    hm_callback_atfork_child();
}

/* After fork, in the child, holding the GIL: keeps only the records of the
   thread that forked (the others' threads do not exist in the child) and
   resets their timing. The native thread is NOT restarted here: a child
   that forks only to exec (subprocess, os.fork then os.execv) must never be
   reported for its pre-exec code. The tracer restarts it at the child's
   first switch into a hub (hm_sampler_resume), when the child goes on
   running its hub. */
void
hm_sampler_child_reinit(unsigned long survivor_ident)
{
    hm_record *dropped = NULL;
    double now = hm_clock_now();
    pthread_mutex_lock(&hm_sampler_lock);
    hm_record **link = &S.records;
    while (*link != NULL) {
        hm_record *r = *link;
        if (r->thread_ident != survivor_ident) {
            *link = r->next;
            r->active = 0;
            r->next = dropped;
            dropped = r;
            continue;
        }
        r->thread = pthread_self();
#ifdef __linux__
        r->thread_tid = (long)syscall(SYS_gettid);
#endif
        r->has_cpu_clock = pthread_getcpuclockid(r->thread, &r->cpu_clock) == 0;
        r->cpu_since = r->cpu_last = -1.0;
        r->fine_last = 0;
        r->hub_blocked = 0;
        r->profile_pending = 0;
        r->since = r->since_late = r->last_sample = now;
        r->blocked = 0;
        r->blind = 0;
        r->call_pending = 0;
        link = &r->next;
    }
    S.mem_next = now + S.mem_period;
    if (!S.shut_down && (S.records != NULL || S.mem_limit > 0)) {
        atomic_store(&hm_resume_pending, 1);
    }
    pthread_mutex_unlock(&hm_sampler_lock);
    while (dropped != NULL) {
        hm_record *next = dropped->next;
        dropped->next = NULL;
        hm_record_decref(dropped);
        dropped = next;
    }
}
