/*
 * sampler.c: the one native thread of the process.
 *
 * It wakes at a period derived from the smallest threshold, reads every
 * record's counters without the GIL, and decides whether a hub is blocked.
 * It never touches a Python object: when something must be reported it
 * copies plain facts into an hm_event, drops hm_sampler_lock, and hands the
 * event to callbacks.c, which takes the GIL. Lock order is GIL first, then
 * hm_sampler_lock; this thread never waits for the GIL holding the lock.
 */
#include "hubmon.h"

#include <errno.h>
#include <math.h>
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

const double hm_hist_bounds_ms[HM_HIST_BUCKETS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500
};

pthread_mutex_t hm_sampler_lock = PTHREAD_MUTEX_INITIALIZER;

/* 1 while the native thread dozes because every hub runs; read by the
   tracer on each switch away from a hub. */
atomic_int hm_dozing;

/* Process-wide state of the native thread, guarded by hm_sampler_lock.
   Plain C only: after fork() the child handler resets the synchronisation
   objects and marks the thread gone. */
static struct {
    pthread_cond_t cond;
    int cond_ready;
    pthread_t thread;
    int thread_exists;          /* created and not yet joined */
    int stop_requested;
    long native_id;
    hm_record *records;
    int64_t next_id;
    double mem_limit;           /* bytes; 0 = memory not watched */
    double mem_period;
    double mem_next;
    int mem_exceeded;
    int mem_pending;
} S;

/* Returns the CLOCK_MONOTONIC time in seconds (the clock of time.monotonic()
   on Linux). Needs nothing; never fails on a supported system. */
double
hm_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Initialises the condition variable on the monotonic clock.
   Needs hm_sampler_lock. Returns 0, or -1 with errno-style failure. */
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

/* Allocates a record with one reference (the caller's). Needs nothing.
   Returns NULL when out of memory (no Python exception is set). */
hm_record *
hm_record_new(int mode, uintptr_t hub, double threshold, int reports)
{
    hm_record *rec = calloc(1, sizeof(hm_record));
    if (rec == NULL) {
        return NULL;
    }
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
    rec->since = rec->since_late = rec->last_sample = hm_monotonic();
    rec->gil_fd = -1;
    pthread_mutex_lock(&hm_sampler_lock);
    rec->id = ++S.next_id;
    pthread_mutex_unlock(&hm_sampler_lock);
    return rec;
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
hm_sampler_period(void)
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

/* Samples one record at time `now`; fills `ev` and returns 1 when Python must
   hear about it, else returns 0. Needs hm_sampler_lock. */
static int
sample_record(hm_record *rec, double now, hm_event *ev)
{
    /* Relaxed loads: a stale value delays detection by one period at most. */
    uint64_t count = rec->mode == HM_MODE_HUB
        ? atomic_load_explicit(&rec->hub_switches, memory_order_relaxed)
        : atomic_load_explicit(&rec->switches, memory_order_relaxed);
    int fine = rec->mode == HM_MODE_HUB
        && atomic_load_explicit(&rec->hub_running, memory_order_relaxed);
    int emit = 0;

    if (rec->ignoring
            && atomic_load_explicit(&rec->switches, memory_order_relaxed)
               != rec->ignored_switches) {
        rec->ignoring = 0;      /* the ignored greenlet switched away */
    }
    if (fine || count != rec->seen) {
        /* The stretch without progress has ended, somewhere between the
           previous sample and this one: take the middle of what is known. */
        double stretch = ((rec->last_sample - rec->since_late) + (now - rec->since)) / 2;
        if (rec->blocked) {
            rec->blocked = 0;
            if (stretch > rec->longest_block) {
                rec->longest_block = stretch;
            }
            memset(ev, 0, sizeof(*ev));
            ev->kind = HM_EVENT_UNBLOCKED;
            ev->duration = stretch;
            emit = 1;
        }
        if (rec->seen_out_once) {
            histogram_add(rec, stretch);
        }
        rec->seen = count;
        /* A new stretch starts after this sample if the hub runs now, else
           it started between the previous sample and this one. */
        rec->since = fine ? now : rec->last_sample;
        rec->since_late = now;
        rec->seen_out_once = 0;
        rec->last_sample = now;
        return emit;
    }

    /* No progress: the gap is at least now - since_late and at most
       now - since. Blocks are judged by the upper bound so that none longer
       than the threshold is missed; assertion scopes by the lower bound so
       that a body that switches in time never fails. */
    double gap = now - rec->since;
    double gap_late = now - rec->since_late;
    rec->last_sample = now;
    rec->seen_out_once = 1;
    if (gap_late > rec->longest_gap) {
        rec->longest_gap = gap_late;
    }
    if (rec->reports && !rec->ignoring && !rec->blocked && gap >= rec->threshold) {
        rec->blocked = 1;
        rec->blocks++;
        memset(ev, 0, sizeof(*ev));
        ev->kind = HM_EVENT_BLOCKED;
        ev->duration = gap;
        ev->current = atomic_load_explicit(&rec->current, memory_order_relaxed);
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
    FILE *f = fopen("/proc/self/statm", "r");
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
    ev->thread = rec->thread;
    ev->thread_tid = rec->thread_tid;
    ev->gil_fd = rec->gil_fd;
    ev->gil_signal = rec->gil_signal;
    ev->threshold = rec->threshold;
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
            if (r->mode != HM_MODE_HUB || r->blocked
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
    return length < 0.05 ? 0.05 : length > 2.0 ? 2.0 : length;
}

/* During a doze every hub was running until the tracer's wake-up: the
   stretches start then, not at the last sample. Needs hm_sampler_lock. */
static void
restart_stretches(void)
{
    double now = hm_monotonic();
    for (hm_record *r = S.records; r != NULL; r = r->next) {
        r->since = r->since_late = r->last_sample = now;
        r->seen_out_once = 0;
    }
}

static void
wake_from_doze(void)
{
    /* A wake-up by the tracer has restarted the stretches already. After a
       timeout the normal sample decides: a hub still running restarts its
       stretch; a hub that switched away without waking the thread (the
       rare race of the tracer's relaxed read) is judged from the sample
       before the doze, an upper bound, so its block is not missed. */
    atomic_store(&hm_dozing, 0);
}

/* Called by the tracer, holding the GIL, at the first switch away from a hub
   while the thread dozes: wakes it. Takes hm_sampler_lock briefly (the lock
   order, GIL then lock, holds). */
void
hm_sampler_poke(void)
{
    if (atomic_exchange(&hm_dozing, 0)) {
        pthread_mutex_lock(&hm_sampler_lock);
        /* Restart the stretches now, before the switch goes on, so that
           anything reading the records (stats(), assert_switches) sees a
           stretch that starts at this switch. */
        restart_stretches();
        if (S.cond_ready) {
            pthread_cond_signal(&S.cond);
        }
        pthread_mutex_unlock(&hm_sampler_lock);
    }
}

/* The body of the native thread. Holds hm_sampler_lock except while it
   sleeps and while callbacks.c runs; never holds a Python object. */
static void *
sampler_main(void *unused)
{
    (void)unused;
    hm_event events[HM_MAX_EVENTS];
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
        double now = hm_monotonic();
        int count = 0;
        int more = 0;

        for (hm_record *r = S.records; r != NULL; r = r->next) {
            if (count == HM_MAX_EVENTS) {
                more = 1;
                break;
            }
            if (sample_record(r, now, &events[count])) {
                event_from_record(&events[count], r);
                count++;
            }
            if (r->next_call > 0 && now >= r->next_call && !r->call_pending) {
                if (count == HM_MAX_EVENTS) {
                    more = 1;
                    break;
                }
                r->call_pending = 1;
                memset(&events[count], 0, sizeof(hm_event));
                events[count].kind = HM_EVENT_CALL;
                event_from_record(&events[count], r);
                count++;
            }
        }
        if (S.mem_limit > 0 && now >= S.mem_next && !S.mem_pending
                && count < HM_MAX_EVENTS) {
            S.mem_next = now + S.mem_period;
            double rss = read_rss();
            /* The resident set bounds the unique set size from above, so
               when it is under the limit and nothing was exceeded before,
               there is nothing to tell and no need for the GIL. */
            if (rss < 0 || rss > S.mem_limit || S.mem_exceeded) {
                S.mem_pending = 1;
                memset(&events[count], 0, sizeof(hm_event));
                events[count].kind = HM_EVENT_MEMORY;
                events[count].duration = rss;
                count++;
            }
        }

        if (count > 0) {
            pthread_mutex_unlock(&hm_sampler_lock);
            for (int i = 0; i < count; i++) {
                hm_callback_dispatch(&events[i]);
            }
            pthread_mutex_lock(&hm_sampler_lock);
            if (more) {
                continue;
            }
        }

        double period = current_period();
        int dozing = count == 0 && may_doze();
        double deadline = hm_monotonic() + (dozing ? doze_length(period) : period);
        for (hm_record *r = S.records; r != NULL; r = r->next) {
            if (r->next_call > 0 && !r->call_pending && r->next_call < deadline) {
                deadline = r->next_call;
            }
        }
        if (S.mem_limit > 0 && !S.mem_pending && S.mem_next < deadline) {
            deadline = S.mem_next;
        }
        struct timespec ts;
        ts.tv_sec = (time_t)deadline;
        ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!S.stop_requested) {
            pthread_cond_timedwait(&S.cond, &hm_sampler_lock, &ts);
        }
        if (dozing) {
            wake_from_doze();
        }
    }
    pthread_mutex_unlock(&hm_sampler_lock);
    return NULL;
}

/* Starts the native thread unless it runs. Needs hm_sampler_lock.
   Returns 0, or -1 when the thread cannot be created. */
static int
start_locked(void)
{
    if (S.thread_exists) {
        return 0;
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
    int rc = pthread_create(&S.thread, NULL, sampler_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        return -1;
    }
    S.thread_exists = 1;
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
        rec->since = rec->since_late = rec->last_sample = hm_monotonic();
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

/* Wakes the thread so it recomputes its deadline. Needs nothing. */
void
hm_sampler_wake(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    if (S.cond_ready) {
        pthread_cond_signal(&S.cond);
    }
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Stops and joins the native thread. Must be called WITHOUT the GIL (the
   thread may be waiting for it). Needs hm_sampler_lock NOT held. */
void
hm_sampler_stop(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    if (!S.thread_exists) {
        pthread_mutex_unlock(&hm_sampler_lock);
        return;
    }
    S.stop_requested = 1;
    pthread_cond_signal(&S.cond);
    pthread_t thread = S.thread;
    pthread_mutex_unlock(&hm_sampler_lock);
    pthread_join(thread, NULL);
    pthread_mutex_lock(&hm_sampler_lock);
    S.thread_exists = 0;
    S.native_id = 0;
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Whether a stop was asked for: callbacks.c checks it after it gets the
   GIL, so that a thread being joined does not call into Python. */
int
hm_sampler_stopping(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    int stopping = S.stop_requested;
    pthread_mutex_unlock(&hm_sampler_lock);
    return stopping;
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

/* The kernel thread id of the native thread, or 0. Needs nothing. */
long
hm_sampler_native_id(void)
{
    pthread_mutex_lock(&hm_sampler_lock);
    long tid = S.native_id;
    pthread_mutex_unlock(&hm_sampler_lock);
    return tid;
}

/* Sets the process-wide memory watch: limit in bytes (0 turns it off) and
   the period in seconds. Needs hm_sampler_lock NOT held. */
void
hm_sampler_set_memory(double limit_bytes, double period)
{
    pthread_mutex_lock(&hm_sampler_lock);
    S.mem_limit = limit_bytes;
    S.mem_period = period;
    S.mem_next = hm_monotonic() + period;
    if (limit_bytes <= 0) {
        S.mem_exceeded = 0;
    }
    if (S.cond_ready) {
        pthread_cond_signal(&S.cond);
    }
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
    pthread_mutex_unlock(&hm_sampler_lock);
}

/* Python has run the monitoring functions of record `record_id`; they are
   next due at `next_call` (0 = none). Needs the lock NOT held. */
void
hm_sampler_call_done(int64_t record_id, double next_call)
{
    pthread_mutex_lock(&hm_sampler_lock);
    for (hm_record *r = S.records; r != NULL; r = r->next) {
        if (r->id == record_id) {
            r->next_call = next_call;
            r->call_pending = 0;
            break;
        }
    }
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
   and its condition variable may be in any state. */
void
hm_sampler_atfork_child(void)
{
    pthread_mutex_unlock(&hm_sampler_lock);
    S.thread_exists = 0;
    S.stop_requested = 0;
    S.native_id = 0;
    atomic_store(&hm_dozing, 0);
    S.mem_pending = 0;
    S.cond_ready = 0;
    cond_init();
}

/* After fork, in the child, holding the GIL: keeps only the records of the
   thread that forked (the others' threads do not exist in the child), resets
   their timing, and restarts the native thread if there is work.
   Returns 0, or -1 when the thread cannot be started. */
int
hm_sampler_reinit_after_fork(unsigned long survivor_ident)
{
    hm_record *dropped = NULL;
    double now = hm_monotonic();
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
        r->since = r->since_late = r->last_sample = now;
        r->blocked = 0;
        r->call_pending = 0;
        link = &r->next;
    }
    S.mem_next = now + S.mem_period;
    int rc = 0;
    if (S.records != NULL || S.mem_limit > 0) {
        rc = start_locked();
    }
    pthread_mutex_unlock(&hm_sampler_lock);
    while (dropped != NULL) {
        hm_record *next = dropped->next;
        dropped->next = NULL;
        hm_record_decref(dropped);
        dropped = next;
    }
    return rc;
}
