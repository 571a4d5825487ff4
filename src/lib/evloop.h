/*
 * evloop.h - the event loop of the network daemons: epoll for descriptors,
 * a min-heap of timers, signals through a signalfd, a monotonic clock.
 *
 * Everything is caller-owned: a struct evl_io per descriptor and a struct
 * evl_timer per timer live inside the caller's connection struct, and the
 * timer heap is an array the caller gives to evl_init. Registering,
 * re-arming and dispatching never allocate, so per-connection memory is
 * fixed and a full loop fails with -1, never with a crash.
 *
 * Descriptors are level-triggered. Interest is EVL_READ / EVL_WRITE, equal
 * to POLLIN / POLLOUT, so tls_pump()'s result can be passed straight to
 * evl_io_set(). Interest 0 takes the descriptor out of epoll (no wake-ups
 * for a hung-up socket the caller is not reading). Call evl_io_del before
 * close(): a connection closed and freed from inside another callback is
 * also dropped from the batch being dispatched, so no stale callback runs.
 *
 * Timers: one-shot or repeating, on the loop's clock in milliseconds.
 * Re-arming an armed timer moves it (O(log n)): an idle deadline per
 * connection is re-armed on each read. Due timers fire in deadline order
 * (ties: arming order is not guaranteed). A timer armed while timers are
 * being dispatched, even for "now", fires on the next turn of the loop, so
 * a zero-delay timer is a safe way to "run this soon" (for instance when
 * TLS holds decrypted bytes that no socket event will announce).
 *
 * Clock: evl_now() is the time at the start of the current turn. Tests may
 * install their own clock with evl_set_clock and run evl_run_once(l, 0)
 * after moving it: timeouts are then tested without sleeping.
 *
 * Signals: evl_signal() blocks the signal and delivers it through the
 * loop's signalfd to a callback, outside any signal-handler context.
 * Several SIGCHLD may arrive as one: reap with waitpid(-1, ..., WNOHANG)
 * in a loop. A child process inherits the blocked mask: call
 * evl_child_signals() after fork() and before exec.
 *
 * Not thread-safe: one loop per thread, signals for one loop per process.
 */
#ifndef POSTERN_EVLOOP_H
#define POSTERN_EVLOOP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* Ready events taken from epoll per turn. */
#define EVL_BATCH 64
/* Highest signal number evl_signal accepts. */
#define EVL_SIG_MAX 64
/* Longest single wait when no timer is due (ms): the clock is re-read. */
#define EVL_WAIT_MAX_MS 60000

/* Interest and ready events (the values of POLLIN, POLLOUT, POLLERR, POLLHUP). */
#define EVL_READ 0x001u
#define EVL_WRITE 0x004u
#define EVL_ERR 0x008u		/* ready only: error on the descriptor */
#define EVL_HUP 0x010u		/* ready only: hang-up */

struct evloop;
struct evl_io;
struct evl_timer;

/* Called with the ready events (EVL_* bits) of io. */
typedef void (*evl_io_cb)(struct evloop *l, struct evl_io *io, unsigned events);
/* Called when t is due (already disarmed, or re-armed if repeating). */
typedef void (*evl_timer_cb)(struct evloop *l, struct evl_timer *t);
/* Called with a signal number that arrived (ctx as given to evl_signal). */
typedef void (*evl_signal_cb)(struct evloop *l, int signo, void *ctx);
/* A clock: milliseconds, never going back. */
typedef int64_t (*evl_clock_fn)(void *arg);

/* One registered descriptor (fill with evl_io_init). */
struct evl_io {
	int fd;
	unsigned interest;	/* EVL_READ | EVL_WRITE as last set */
	int in_epoll;		/* known to the kernel */
	evl_io_cb cb;
	void *ctx;
};

/* One timer (fill with evl_timer_init). */
struct evl_timer {
	int64_t when;		/* deadline on the loop clock, ms */
	int64_t interval;	/* >0: repeating period */
	size_t slot;		/* index in the heap + 1; 0: not armed */
	uint64_t armed_turn;	/* turn it was armed in during dispatch */
	evl_timer_cb cb;
	void *ctx;
};

struct evl_sig {
	evl_signal_cb cb;
	void *ctx;
};

struct evloop {
	int epfd;
	int sigfd;		/* -1 until the first evl_signal */
	struct evl_io sigio;
	sigset_t sigs;		/* signals routed to sigfd */
	sigset_t oldmask;	/* the mask before the first evl_signal */
	int mask_saved;
	struct evl_sig sig[EVL_SIG_MAX + 1];
	struct evl_timer **heap;	/* the caller's array */
	size_t heap_cap, heap_len;
	int64_t now;
	evl_clock_fn clock;
	void *clock_arg;
	uint64_t turn;		/* incremented per timer dispatch */
	int dispatching;	/* inside timer dispatch */
	int stopped;
	int exit_code;
	struct evl_ready {
		struct evl_io *io;	/* NULL once dispatched or deleted */
		unsigned events;
	} ready[EVL_BATCH];
	int nready;		/* entries of ready still to dispatch */
};

/* ---- the loop ------------------------------------------------------------ */

/* Sets up l with room for timer_cap armed timers in heap (the caller's
 * array of timer_cap pointers). Returns 0, or -1 with errno (epoll_create). */
int evl_init(struct evloop *l, struct evl_timer **heap, size_t timer_cap);

/* Closes the loop's descriptors and restores the signal mask. Registered
 * descriptors are not closed. */
void evl_free(struct evloop *l);

/* Runs until evl_stop. Returns the code given to evl_stop, or -1 with
 * errno if epoll fails. */
int evl_run(struct evloop *l);

/* One turn: waits at most max_wait_ms (-1: until the next timer or event;
 * 0: not at all), dispatches ready descriptors, signals and due timers.
 * Returns the number of callbacks run, or -1 with errno. */
int evl_run_once(struct evloop *l, int max_wait_ms);

/* Makes evl_run return code after the current callback's turn. */
void evl_stop(struct evloop *l, int code);

/* 1 once evl_stop was called (until evl_run starts again). */
int evl_stopped(const struct evloop *l);

/* ---- clock --------------------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t evl_clock_ms(void);

/* The loop's time at the start of this turn (ms on its clock). */
int64_t evl_now(const struct evloop *l);

/* Re-reads the loop's clock (after slow work inside a callback). */
int64_t evl_update_now(struct evloop *l);

/* Replaces the clock (NULL: back to evl_clock_ms). For tests. */
void evl_set_clock(struct evloop *l, evl_clock_fn fn, void *arg);

/* ---- descriptors ---------------------------------------------------------- */

/* Fills io for fd; nothing is registered yet. */
void evl_io_init(struct evl_io *io, int fd, evl_io_cb cb, void *ctx);

/* Sets the interest of io (EVL_READ | EVL_WRITE, 0 for none); registers it
 * on first use. Cheap when nothing changes. Returns 0, or -1 with errno. */
int evl_io_set(struct evloop *l, struct evl_io *io, unsigned interest);

/* Unregisters io (call before close). Safe on an unregistered io. */
void evl_io_del(struct evloop *l, struct evl_io *io);

/* ---- timers -------------------------------------------------------------- */

/* Fills t; not armed. */
void evl_timer_init(struct evl_timer *t, evl_timer_cb cb, void *ctx);

/* Arms (or moves) t to fire after delay_ms, then every interval_ms if
 * interval_ms > 0. Returns 0, or -1 with errno ENOSPC when the heap is
 * full. */
int evl_timer_start(struct evloop *l, struct evl_timer *t, int64_t delay_ms,
	int64_t interval_ms);

/* Arms (or moves) t to fire once at when_ms on the loop clock. */
int evl_timer_at(struct evloop *l, struct evl_timer *t, int64_t when_ms);

/* Disarms t (nothing if it is not armed). */
void evl_timer_stop(struct evloop *l, struct evl_timer *t);

/* 1 if t is armed. */
int evl_timer_armed(const struct evl_timer *t);

/* Armed timers. */
size_t evl_timer_count(const struct evloop *l);

/* ---- signals ------------------------------------------------------------- */

/* Routes signo (SIGHUP, SIGTERM, SIGINT, SIGCHLD...) to cb through the
 * loop's signalfd: blocks it and creates the signalfd on first use.
 * cb NULL stops routing (the signal stays blocked and is discarded).
 * Returns 0, or -1 with errno. */
int evl_signal(struct evloop *l, int signo, evl_signal_cb cb, void *ctx);

/* In a child after fork(): restores the signal mask from before the loop
 * blocked anything, so an exec'd program gets its signals. Returns 0 or -1. */
int evl_child_signals(const struct evloop *l);

#endif
