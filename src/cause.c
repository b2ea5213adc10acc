/*
 * cause.c: the kernel's view of a thread of this process: the syscall it is
 * in, its scheduler state, and what the file descriptor it waits on is.
 *
 * It reads /proc/self/task/<tid>/syscall and /proc/self/task/<tid>/stat with
 * open/read/close into stack buffers, names a descriptor with fstat,
 * getsockname, getpeername and getsockopt (the threads share the descriptor
 * table) or readlink of /proc/self/fd/<n>, and reads a poll or select
 * argument out of the thread's memory with process_vm_readv, which fails
 * cleanly when that memory changed under it. So it needs no GIL and no lock,
 * touches no Python object, holds no global state (fork leaves nothing
 * stale), makes a handful of small reads, and never waits for the thread it
 * looks at: the native thread (sampler.c) calls it while a hub is blocked.
 * The sampler alone decides the GIL and GC causes; this file never does.
 *
 * The view is a snapshot of a moving thread: by the time it is read the
 * thread may have left the call, or closed and reused the descriptor. It is
 * evidence for a report, not a fact to act on.
 */
#include "hubmon.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#ifdef __linux__
#  include <arpa/inet.h>
#  include <errno.h>
#  include <fcntl.h>
#  include <netinet/in.h>
#  include <poll.h>
#  include <stdlib.h>
#  include <sys/select.h>
#  include <sys/socket.h>
#  include <sys/stat.h>
#  include <sys/syscall.h>
#  include <sys/uio.h>
#  include <sys/un.h>
#  include <unistd.h>
#endif

const char *const hm_cause_names[7] = {
    "unknown", "cpu", "sleep", "io", "lock", "gil", "gc"
};

/* Fills `out` as "nothing known", with `detail` as the reason. Needs
   nothing. */
static void
view_clear(hm_kernel_view *out, const char *detail)
{
    out->kind = HM_CAUSE_UNKNOWN;
    out->waits_for_events = 0;
    out->syscall = -2;
    out->state = 0;
    snprintf(out->detail, sizeof(out->detail), "%s", detail);
}

#ifdef __linux__

/* What a syscall means for the thread in it. */
enum {
    SC_OTHER,       /* just named */
    SC_FD_IO,       /* blocks on the descriptor in its first argument */
    SC_POLL,        /* poll, ppoll */
    SC_SELECT,      /* select, pselect6 */
    SC_EPOLL,       /* epoll_wait and its variants */
    SC_SLEEP,       /* nanosleep, clock_nanosleep */
    SC_SIGNAL,      /* waits for a signal */
    SC_CHILD,       /* waits for a child process */
    SC_FUTEX,       /* futex, futex_waitv */
    SC_FLOCK,       /* flock on its first argument */
    SC_FCNTL,       /* fcntl: a lock only with a waiting lock command */
    SC_RESTART,     /* restart_syscall: a sleep or wait resumed after a stop */
};

typedef struct {
    long nr;
    const char *name;
    int what;
} syscall_info;

/* The syscalls this file knows by name. Each one is guarded: an
   architecture may lack it (aarch64 has no poll, select or nanosleep). */
#define SC(name, what) {SYS_##name, #name, what}
static const syscall_info known_syscalls[] = {
#ifdef SYS_read
    SC(read, SC_FD_IO),
#endif
#ifdef SYS_readv
    SC(readv, SC_FD_IO),
#endif
#ifdef SYS_pread64
    SC(pread64, SC_FD_IO),
#endif
#ifdef SYS_preadv
    SC(preadv, SC_FD_IO),
#endif
#ifdef SYS_preadv2
    SC(preadv2, SC_FD_IO),
#endif
#ifdef SYS_recvfrom
    SC(recvfrom, SC_FD_IO),
#endif
#ifdef SYS_recvmsg
    SC(recvmsg, SC_FD_IO),
#endif
#ifdef SYS_recvmmsg
    SC(recvmmsg, SC_FD_IO),
#endif
#ifdef SYS_connect
    SC(connect, SC_FD_IO),
#endif
#ifdef SYS_accept
    SC(accept, SC_FD_IO),
#endif
#ifdef SYS_accept4
    SC(accept4, SC_FD_IO),
#endif
#ifdef SYS_write
    SC(write, SC_FD_IO),
#endif
#ifdef SYS_writev
    SC(writev, SC_FD_IO),
#endif
#ifdef SYS_pwrite64
    SC(pwrite64, SC_FD_IO),
#endif
#ifdef SYS_pwritev
    SC(pwritev, SC_FD_IO),
#endif
#ifdef SYS_pwritev2
    SC(pwritev2, SC_FD_IO),
#endif
#ifdef SYS_sendto
    SC(sendto, SC_FD_IO),
#endif
#ifdef SYS_sendmsg
    SC(sendmsg, SC_FD_IO),
#endif
#ifdef SYS_sendmmsg
    SC(sendmmsg, SC_FD_IO),
#endif
#ifdef SYS_poll
    SC(poll, SC_POLL),
#endif
#ifdef SYS_ppoll
    SC(ppoll, SC_POLL),
#endif
#ifdef SYS_select
    SC(select, SC_SELECT),
#endif
#ifdef SYS_pselect6
    SC(pselect6, SC_SELECT),
#endif
#ifdef SYS_epoll_wait
    SC(epoll_wait, SC_EPOLL),
#endif
#ifdef SYS_epoll_pwait
    SC(epoll_pwait, SC_EPOLL),
#endif
#ifdef SYS_epoll_pwait2
    SC(epoll_pwait2, SC_EPOLL),
#endif
#ifdef SYS_nanosleep
    SC(nanosleep, SC_SLEEP),
#endif
#ifdef SYS_clock_nanosleep
    SC(clock_nanosleep, SC_SLEEP),
#endif
#ifdef SYS_pause
    SC(pause, SC_SIGNAL),
#endif
#ifdef SYS_rt_sigsuspend
    SC(rt_sigsuspend, SC_SIGNAL),
#endif
#ifdef SYS_rt_sigtimedwait
    SC(rt_sigtimedwait, SC_SIGNAL),
#endif
#ifdef SYS_wait4
    SC(wait4, SC_CHILD),
#endif
#ifdef SYS_waitid
    SC(waitid, SC_CHILD),
#endif
#ifdef SYS_futex
    SC(futex, SC_FUTEX),
#endif
#ifdef SYS_futex_waitv
    SC(futex_waitv, SC_FUTEX),
#endif
#ifdef SYS_flock
    SC(flock, SC_FLOCK),
#endif
#ifdef SYS_fcntl
    SC(fcntl, SC_FCNTL),
#endif
#ifdef SYS_restart_syscall
    SC(restart_syscall, SC_RESTART),
#endif
#ifdef SYS_open
    SC(open, SC_OTHER),
#endif
#ifdef SYS_openat
    SC(openat, SC_OTHER),
#endif
#ifdef SYS_close
    SC(close, SC_OTHER),
#endif
#ifdef SYS_ioctl
    SC(ioctl, SC_OTHER),
#endif
#ifdef SYS_fsync
    SC(fsync, SC_OTHER),
#endif
#ifdef SYS_fdatasync
    SC(fdatasync, SC_OTHER),
#endif
#ifdef SYS_sync
    SC(sync, SC_OTHER),
#endif
#ifdef SYS_mmap
    SC(mmap, SC_OTHER),
#endif
#ifdef SYS_munmap
    SC(munmap, SC_OTHER),
#endif
#ifdef SYS_mprotect
    SC(mprotect, SC_OTHER),
#endif
#ifdef SYS_madvise
    SC(madvise, SC_OTHER),
#endif
#ifdef SYS_brk
    SC(brk, SC_OTHER),
#endif
#ifdef SYS_sched_yield
    SC(sched_yield, SC_OTHER),
#endif
#ifdef SYS_getrandom
    SC(getrandom, SC_OTHER),
#endif
#ifdef SYS_sendfile
    SC(sendfile, SC_OTHER),
#endif
#ifdef SYS_splice
    SC(splice, SC_OTHER),
#endif
#ifdef SYS_io_getevents
    SC(io_getevents, SC_OTHER),
#endif
#ifdef SYS_io_uring_enter
    SC(io_uring_enter, SC_OTHER),
#endif
#ifdef SYS_msgrcv
    SC(msgrcv, SC_OTHER),
#endif
#ifdef SYS_semop
    SC(semop, SC_OTHER),
#endif
#ifdef SYS_semtimedop
    SC(semtimedop, SC_OTHER),
#endif
#ifdef SYS_execve
    SC(execve, SC_OTHER),
#endif
#ifdef SYS_exit
    SC(exit, SC_OTHER),
#endif
#ifdef SYS_exit_group
    SC(exit_group, SC_OTHER),
#endif
};
#undef SC

/* The entry of syscall `nr`, or NULL when this file does not know it. Needs
   nothing. */
static const syscall_info *
syscall_find(long nr)
{
    size_t count = sizeof(known_syscalls) / sizeof(known_syscalls[0]);
    for (size_t i = 0; i < count; i++) {
        if (known_syscalls[i].nr == nr) {
            return &known_syscalls[i];
        }
    }
    return NULL;
}

/* Reads at most size - 1 bytes of the file at `path` into `buf` and ends
   them with a NUL. Needs nothing; the descriptor is closed on every path.
   Returns the length read, or -1 with errno set. */
static ssize_t
read_small_file(const char *path, char *buf, size_t size)
{
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    while (len < size - 1) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* Appends printf-style text to `buf` (of `size` bytes, NUL-terminated),
   truncating at the end. Needs nothing. */
static void
append(char *buf, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void
append(char *buf, size_t size, const char *format, ...)
{
    size_t used = strlen(buf);
    if (used + 1 >= size) {
        return;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(buf + used, size - used, format, args);
    va_end(args);
}

/* Copies `count` bytes at address `remote` of this process into `local`.
   Needs nothing: process_vm_readv checks the address, so memory that the
   other thread unmapped or changed meanwhile gives an error, not a crash.
   Returns 0, or -1 when not all of it could be read. */
static int
read_memory(unsigned long remote, void *local, size_t count)
{
    if (remote == 0) {
        return -1;
    }
    struct iovec here = {local, count};
    struct iovec there = {(void *)(uintptr_t)remote, count};
    ssize_t n = process_vm_readv(getpid(), &here, 1, &there, 1, 0);
    return n == (ssize_t)count ? 0 : -1;
}

/* Appends an internet socket address as "1.2.3.4:80" or "[::1]:80" to `buf`.
   Needs nothing. */
static void
append_inet(char *buf, size_t size, const struct sockaddr_storage *addr)
{
    char host[INET6_ADDRSTRLEN];
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host)) == NULL) {
            snprintf(host, sizeof(host), "?");
        }
        append(buf, size, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    }
    else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)) == NULL) {
            snprintf(host, sizeof(host), "?");
        }
        append(buf, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    }
}

/* Appends a unix socket's name (of `len` bytes, as getsockname gave it) to
   `buf`: its path, "@name" for an abstract one, or "unnamed". Needs
   nothing. */
static void
append_unix(char *buf, size_t size, const struct sockaddr_storage *addr, socklen_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
    size_t offset = offsetof(struct sockaddr_un, sun_path);
    if (len <= offset) {
        append(buf, size, "unnamed");
        return;
    }
    size_t path_len = len - offset;
    if (path_len > sizeof(un->sun_path)) {
        path_len = sizeof(un->sun_path);
    }
    if (un->sun_path[0] == '\0') {
        /* An abstract name: bytes, not NUL-terminated. */
        append(buf, size, "@%.*s", (int)(path_len - 1), un->sun_path + 1);
    }
    else {
        append(buf, size, "%.*s", (int)strnlen(un->sun_path, path_len), un->sun_path);
    }
}

/* Appends what socket `fd` is to `buf`: "TCP 127.0.0.1:41012 ->
   127.0.0.1:5432", "TCP listening on ...", "UDP ... (not connected)",
   "unix /path", ... `peer_hint` (or NULL) is an address the thread is
   connecting to, used when the socket has no peer yet. Needs nothing;
   these calls do not wait for the thread blocked on the socket, which
   releases the socket's lock while it sleeps. */
static void
append_socket(char *buf, size_t size, int fd, const struct sockaddr_storage *peer_hint)
{
    struct sockaddr_storage local, peer;
    socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
    int type = 0, listening = 0;
    socklen_t opt_len = sizeof(type);

    memset(&local, 0, sizeof(local));
    memset(&peer, 0, sizeof(peer));
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) < 0) {
        append(buf, size, "a socket");
        return;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &opt_len) < 0) {
        type = 0;
    }
    opt_len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &opt_len) < 0) {
        listening = 0;
    }
    int connected = getpeername(fd, (struct sockaddr *)&peer, &peer_len) == 0;

    int family = local.ss_family;
    if (family == AF_INET || family == AF_INET6) {
        const char *proto = type == SOCK_STREAM ? "TCP"
                            : type == SOCK_DGRAM ? "UDP" : "IP";
        append(buf, size, listening ? "%s listening on " : "%s ", proto);
        append_inet(buf, size, &local);
        if (connected && (peer.ss_family == AF_INET || peer.ss_family == AF_INET6)) {
            append(buf, size, " -> ");
            append_inet(buf, size, &peer);
        }
        else if (!listening && peer_hint != NULL
                 && (peer_hint->ss_family == AF_INET || peer_hint->ss_family == AF_INET6)) {
            append(buf, size, " -> ");
            append_inet(buf, size, peer_hint);
            append(buf, size, " (connecting)");
        }
        else if (!listening) {
            append(buf, size, " (not connected)");
        }
    }
    else if (family == AF_UNIX) {
        append(buf, size, listening ? "unix listening on " : "unix ");
        append_unix(buf, size, &local, local_len);
        if (connected && peer_len > offsetof(struct sockaddr_un, sun_path)) {
            append(buf, size, " -> ");
            append_unix(buf, size, &peer, peer_len);
        }
    }
    else {
        append(buf, size, "a socket of family %d", family);
    }
}

/* Appends what descriptor `fd` of this process is to `buf`: a socket's
   addresses, else the target of /proc/self/fd/<fd> (a path, "pipe:[123]",
   "anon_inode:[eventfd]"). `peer_hint` as for append_socket. Needs
   nothing. */
static void
append_fd(char *buf, size_t size, int fd, const struct sockaddr_storage *peer_hint)
{
    struct stat st;
    if (fd < 0) {
        append(buf, size, "no descriptor");
        return;
    }
    if (fstat(fd, &st) < 0) {
        append(buf, size, "a closed descriptor");
        return;
    }
    if (S_ISSOCK(st.st_mode)) {
        append_socket(buf, size, fd, peer_hint);
        return;
    }
    char path[32], target[HM_DETAIL_MAX];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0) {
        append(buf, size, "a descriptor of unknown kind");
        return;
    }
    target[n] = '\0';
    append(buf, size, "%s", target);
}

/* Describes a call blocked on the descriptor in its first argument:
   "recvfrom on fd 7: TCP ...". For connect, the address it connects to is
   read from the thread's memory, for a socket that has no peer yet. */
static void
describe_fd_call(hm_kernel_view *out, const syscall_info *info,
                 const unsigned long *args)
{
    struct sockaddr_storage hint;
    const struct sockaddr_storage *peer_hint = NULL;
#ifdef SYS_connect
    if (info->nr == SYS_connect && args[2] > 0 && args[2] <= sizeof(hint)) {
        memset(&hint, 0, sizeof(hint));
        if (read_memory(args[1], &hint, (size_t)args[2]) == 0) {
            peer_hint = &hint;
        }
    }
#endif
    int fd = (int)args[0];
    out->kind = HM_CAUSE_IO;
    snprintf(out->detail, sizeof(out->detail), "%s on fd %d: ", info->name, fd);
    append_fd(out->detail, sizeof(out->detail), fd, peer_hint);
}

/* Appends " on fd N: <what>" or " on K fds, first fd N: <what>". */
static void
append_fd_list(char *buf, size_t size, unsigned long count, int first)
{
    if (count == 1) {
        append(buf, size, " on fd %d: ", first);
    }
    else {
        append(buf, size, " on %lu fds, first fd %d: ", count, first);
    }
    append_fd(buf, size, first, NULL);
}

/* Starts the view of a wait in `info`'s call: a sleep when `sleeps` (a
   poll or select without descriptors), else a wait for events whose detail
   the caller goes on to name. Returns whether it is a wait for events. */
static int
begin_wait(hm_kernel_view *out, const syscall_info *info, int sleeps)
{
    if (sleeps) {
        out->kind = HM_CAUSE_SLEEP;
        snprintf(out->detail, sizeof(out->detail), "%s with no fd (a sleep)", info->name);
        return 0;
    }
    out->kind = HM_CAUSE_IO;
    out->waits_for_events = 1;
    snprintf(out->detail, sizeof(out->detail), "%s", info->name);
    return 1;
}

/* poll/ppoll(fds, nfds, ...): a sleep without descriptors, else a wait for
   events, named by the first descriptor of the list (read from the
   thread's memory; at most 8 entries are looked at). */
static void
describe_poll(hm_kernel_view *out, const syscall_info *info, const unsigned long *args)
{
    unsigned long nfds = args[1];
    if (!begin_wait(out, info, nfds == 0)) {
        return;
    }

    struct pollfd fds[8];
    size_t seen = nfds < 8 ? (size_t)nfds : 8;
    if (read_memory(args[0], fds, seen * sizeof(fds[0])) < 0) {
        append(out->detail, sizeof(out->detail),
               " on %lu fds (their list cannot be read)", nfds);
        return;
    }
    for (size_t i = 0; i < seen; i++) {
        if (fds[i].fd >= 0) {
            append_fd_list(out->detail, sizeof(out->detail), nfds, fds[i].fd);
            return;
        }
    }
    append(out->detail, sizeof(out->detail), " on %lu fds, none of the first %zu valid",
           nfds, seen);
}

/* Reads the fd_set at `remote` holding descriptors below `nfds` into `set`.
   Returns 0, or -1 when there is none or it cannot be read. */
static int
read_fd_set(unsigned long remote, int nfds, fd_set *set)
{
    size_t word_bits = 8 * sizeof(long);
    size_t bytes = ((size_t)nfds + word_bits - 1) / word_bits * sizeof(long);
    FD_ZERO(set);
    if (remote == 0 || bytes > sizeof(*set)) {
        return -1;
    }
    return read_memory(remote, set, bytes);
}

/* select/pselect6(nfds, readfds, writefds, exceptfds, ...): a sleep without
   descriptors (time.sleep of Python 3.9 and 3.10), else a wait for events,
   named by the first descriptor of the read set, else of the write set,
   else of the exceptional set (the sets are read from the thread's
   memory). */
static void
describe_select(hm_kernel_view *out, const syscall_info *info, const unsigned long *args)
{
    int nfds = (int)args[0];
    if (!begin_wait(out, info, nfds <= 0 || (args[1] == 0 && args[2] == 0 && args[3] == 0))) {
        return;
    }
    if (nfds > FD_SETSIZE) {
        nfds = FD_SETSIZE;
    }

    /* Python passes NULL for an empty list, so a missing set is normal. */
    fd_set sets[3];
    int have[3];
    for (int i = 0; i < 3; i++) {
        have[i] = read_fd_set(args[1 + i], nfds, &sets[i]) == 0;
        if (!have[i] && args[1 + i] != 0) {
            append(out->detail, sizeof(out->detail),
                   " with nfds %d (its sets cannot be read)", nfds);
            return;
        }
    }
    unsigned long count = 0;
    int first[3] = {-1, -1, -1};
    for (int fd = 0; fd < nfds; fd++) {
        int in_any = 0;
        for (int i = 0; i < 3; i++) {
            if (have[i] && FD_ISSET(fd, &sets[i])) {
                in_any = 1;
                if (first[i] < 0) {
                    first[i] = fd;
                }
            }
        }
        count += (unsigned long)in_any;
    }
    if (count == 0) {
        append(out->detail, sizeof(out->detail), " with nfds %d and no fd in its sets",
               nfds);
        return;
    }
    append_fd_list(out->detail, sizeof(out->detail), count,
                   first[0] >= 0 ? first[0] : first[1] >= 0 ? first[1] : first[2]);
}

/* Classifies a thread blocked in syscall `nr` with arguments `args`. */
static void
classify_syscall(hm_kernel_view *out, long nr, const unsigned long *args)
{
    const syscall_info *info = syscall_find(nr);
    if (info == NULL) {
        out->kind = HM_CAUSE_UNKNOWN;
        snprintf(out->detail, sizeof(out->detail), "in syscall %ld", nr);
        return;
    }
    switch (info->what) {
    case SC_FD_IO:
        describe_fd_call(out, info, args);
        return;
    case SC_POLL:
        describe_poll(out, info, args);
        return;
    case SC_SELECT:
        describe_select(out, info, args);
        return;
    case SC_EPOLL:
        out->kind = HM_CAUSE_IO;
        out->waits_for_events = 1;
        snprintf(out->detail, sizeof(out->detail), "%s on fd %d (an epoll instance)",
                 info->name, (int)args[0]);
        return;
    case SC_SLEEP:
        out->kind = HM_CAUSE_SLEEP;
        snprintf(out->detail, sizeof(out->detail), "%s", info->name);
        return;
    case SC_SIGNAL:
        out->kind = HM_CAUSE_SLEEP;
        snprintf(out->detail, sizeof(out->detail), "waiting for a signal (%s)", info->name);
        return;
    case SC_CHILD:
        out->kind = HM_CAUSE_UNKNOWN;
        snprintf(out->detail, sizeof(out->detail), "waiting for a child process (%s)",
                 info->name);
        return;
    case SC_FUTEX:
        out->kind = HM_CAUSE_LOCK;
        snprintf(out->detail, sizeof(out->detail),
                 "%s wait (a lock or condition held elsewhere)", info->name);
        return;
    case SC_FLOCK:
        out->kind = HM_CAUSE_LOCK;
        snprintf(out->detail, sizeof(out->detail), "flock on fd %d: ", (int)args[0]);
        append_fd(out->detail, sizeof(out->detail), (int)args[0], NULL);
        return;
    case SC_FCNTL:
        if (args[1] == F_SETLKW
#ifdef F_OFD_SETLKW
                || args[1] == F_OFD_SETLKW
#endif
                ) {
            out->kind = HM_CAUSE_LOCK;
            snprintf(out->detail, sizeof(out->detail), "fcntl lock on fd %d: ", (int)args[0]);
            append_fd(out->detail, sizeof(out->detail), (int)args[0], NULL);
            return;
        }
        break;
    case SC_RESTART:
        out->kind = HM_CAUSE_UNKNOWN;
        snprintf(out->detail, sizeof(out->detail),
                 "in syscall restart_syscall (a sleep or wait resumed after a signal)");
        return;
    default:
        break;
    }
    out->kind = HM_CAUSE_UNKNOWN;
    snprintf(out->detail, sizeof(out->detail), "in syscall %s", info->name);
}

/* Parses /proc/.../syscall: "running", "-1 sp pc" (blocked, not in a
   syscall), or "nr arg1 ... arg6 sp pc" with the arguments in hex. Returns
   the syscall number, -1 for the first two, or -2 when the text is not
   understood. */
static long
parse_syscall(const char *text, unsigned long *args)
{
    if (strncmp(text, "running", 7) == 0) {
        return -1;
    }
    char *end;
    errno = 0;
    long nr = strtol(text, &end, 10);
    if (end == text || errno != 0 || nr < -1) {
        return -2;
    }
    if (nr == -1) {
        return -1;
    }
    for (int i = 0; i < 6; i++) {
        const char *start = end;
        args[i] = strtoul(start, &end, 16);
        if (end == start) {
            return -2;
        }
    }
    return nr;
}

/* The state letter of /proc/.../stat: the first field after the ")" that
   ends the thread's name, which may itself hold spaces and parentheses; so
   it is after the LAST ")". Returns 0 when not found. */
static char
parse_state(const char *text)
{
    const char *paren = strrchr(text, ')');
    if (paren == NULL || paren[1] != ' ' || paren[2] == '\0') {
        return 0;
    }
    return paren[2];
}

/* Replaces every byte that is not printable ASCII, so the detail is plain
   ASCII whatever a path or a socket name held. */
static void
make_ascii(char *text)
{
    for (; *text != '\0'; text++) {
        if ((unsigned char)*text < 0x20 || (unsigned char)*text > 0x7e) {
            *text = '?';
        }
    }
}

/* The view of the state alone, when the thread is not in a syscall or its
   syscall cannot be read. */
static void
classify_state(hm_kernel_view *out, const char *what)
{
    switch (out->state) {
    case 'R':
        out->kind = HM_CAUSE_CPU;
        snprintf(out->detail, sizeof(out->detail), "running");
        return;
    case 'T':
    case 't':
        out->kind = HM_CAUSE_UNKNOWN;
        snprintf(out->detail, sizeof(out->detail), "stopped (state %c)", out->state);
        return;
    case 'Z':
    case 'X':
        out->kind = HM_CAUSE_UNKNOWN;
        snprintf(out->detail, sizeof(out->detail), "exiting (state %c)", out->state);
        return;
    default:
        out->kind = HM_CAUSE_UNKNOWN;
        snprintf(out->detail, sizeof(out->detail), "%s (state %c)", what,
                 out->state != 0 ? out->state : '?');
        return;
    }
}

int
hm_kernel_view_read(long tid, hm_kernel_view *out)
{
    char path[64], text[1024];
    unsigned long args[6] = {0};

    view_clear(out, "");
    if (tid <= 0) {
        snprintf(out->detail, sizeof(out->detail),
                 "thread %ld cannot be read: not a thread id", tid);
        return -1;
    }
    if (tid == (long)syscall(SYS_gettid)) {
        /* The kernel would show this very read. */
        out->kind = HM_CAUSE_CPU;
        out->syscall = -1;
        out->state = 'R';
        snprintf(out->detail, sizeof(out->detail), "running (the calling thread)");
        return 0;
    }

    /* The syscall first: the kernel reads it only once the thread is off
       the CPU, else says "running"; the state is read right after. */
    snprintf(path, sizeof(path), "/proc/self/task/%ld/syscall", tid);
    long nr = -2;
    int running = 0;
    if (read_small_file(path, text, sizeof(text)) > 0) {
        running = strncmp(text, "running", 7) == 0;
        nr = parse_syscall(text, args);
    }
    snprintf(path, sizeof(path), "/proc/self/task/%ld/stat", tid);
    if (read_small_file(path, text, sizeof(text)) < 0) {
        int err = errno;
        snprintf(out->detail, sizeof(out->detail), "thread %ld cannot be read: %s", tid,
                 err == ENOENT || err == ESRCH ? "no such thread in this process"
                 : err == EACCES || err == EPERM ? "permission denied"
                 : "/proc/self/task is not readable");
        return -1;
    }
    out->state = parse_state(text);
    out->syscall = nr;

    if (running || (nr == -1 && out->state == 'R')) {
        out->kind = HM_CAUSE_CPU;
        snprintf(out->detail, sizeof(out->detail), "running");
    }
    else if (nr == -1) {
        classify_state(out, "not in a syscall");
    }
    else if (nr == -2) {
        classify_state(out, "its syscall cannot be read");
    }
    else {
        classify_syscall(out, nr, args);
    }
    if (out->state == 'D') {
        append(out->detail, sizeof(out->detail), " (uninterruptible)");
    }
    make_ascii(out->detail);
    return 0;
}

#else  /* !__linux__ */

int
hm_kernel_view_read(long tid, hm_kernel_view *out)
{
    (void)tid;
    view_clear(out, "the cause needs Linux's /proc");
    return -1;
}


#endif /* __linux__ */
