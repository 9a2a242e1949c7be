// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * Socket tracer: syscall tracepoints only (no kprobes), CO-RE reads of the task's fd table.
 *
 * sys_enter_* saves the arguments in the thread's slot (df_threads, keyed by pid_tgid, written
 * in place: no insert/delete pair per syscall); sys_exit_* takes them back, resolves fd -> struct file -> struct socket -> struct sock through
 * task->files->fdt->fd[fd], keeps only AF_INET/AF_INET6 TCP/UDP sockets, copies the first
 * df_cfg_max_data bytes of the payload from user memory, and writes one record to the ring
 * buffer. A full ring buffer drops the record and counts it: the traced thread never waits.
 */
#include "vmlinux_min.h"
#include "deepflow_shared.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
/* bpf_ringbuf_* flags and queries (linux/bpf.h, not in vmlinux_min.h) */
#define DF_RB_NO_WAKEUP 1ULL
#define DF_RB_FORCE_WAKEUP 2ULL
#define DF_WAKEUP_BYTES (128 * 1024)
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

/* Set by user space before load (read-only data). */
const volatile __u32 df_cfg_max_data = 1024;
const volatile __u32 df_cfg_self_pid = 0;
/* 0: every process; otherwise only this tgid. */
const volatile __u32 df_cfg_target_pid = 0;

struct df_args {
	__u64 enter_ts;
	__u64 buf;      /* buffer, iovec array or msghdr/mmsghdr */
	__u64 count;    /* buffer size / iovec count / vlen */
	__u32 fd;
	__u16 syscall;
	__u16 _pad;
};

struct df_sock_state {
	__u64 seq;
	__u8 role;
	__u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct df_sock_state);
} df_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} df_events SEC(".maps");

struct df_event_buf {
	struct df_socket_event hdr;
	__u8 data[DF_MAX_DATA * 3]; /* room for the verifier: off < 4096 plus n < 8192 */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct df_event_buf);
} df_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct df_socket_stats);
} df_stats SEC(".maps");

/* Everything the tracer keeps per thread, in one slot written in place: the pending syscall
 * (enter -> exit), the syscall trace id state and the SSL call in progress. One lookup per
 * tracepoint instead of an insert at enter plus a lookup and a delete at exit (and separate
 * maps for the trace id and the SSL call). */
struct df_thread {
	struct df_args args; /* args.syscall == 0: no syscall pending */
	__u64 trace_id;
	__u8 last_dir; /* 0xff: none yet */
	__u8 ssl_active; /* an SSL_read/SSL_write call is in progress (ssl_* below) */
	__u16 ssl_syscall;
	__s32 ssl_fd; /* set by the nested read/write syscall, -1 until then */
	__u64 ssl_enter_ts;
	__u64 ssl;
	__u64 ssl_buf;
	__u64 ssl_out_len_ptr; /* _ex forms: size_t *readbytes / *written */
	/* The socket of ssl_fd as resolved by the nested syscall's exit during this SSL call
	 * (0: not yet): the SSL return takes it instead of walking the fd table again. */
	__u64 ssl_sk;
	struct df_sock_tuple ssl_tuple;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct df_thread);
} df_threads SEC(".maps");

/* The thread's slot, created on first use. */
static __always_inline struct df_thread *thread_slot(__u64 id)
{
	struct df_thread *t = bpf_map_lookup_elem(&df_threads, &id);
	if (t)
		return t;
	struct df_thread n = {};
	n.last_dir = 0xff;
	n.ssl_fd = -1;
	bpf_map_update_elem(&df_threads, &id, &n, BPF_NOEXIST);
	return bpf_map_lookup_elem(&df_threads, &id);
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} df_trace_counter SEC(".maps");

/* The thread's syscall trace id for a DATA event in direction `dir`. */
static __always_inline __u64 thread_trace_id(struct df_thread *t, __u8 dir)
{
	if (dir == DF_DIR_INGRESS && t->last_dir != DF_DIR_INGRESS) {
		__u32 zero = 0;
		__u64 *c = bpf_map_lookup_elem(&df_trace_counter, &zero);
		if (c)
			t->trace_id = __sync_fetch_and_add(c, 1) + 1;
	}
	t->last_dir = dir;
	return t->trace_id;
}

struct df_iovec {
	__u64 base;
	__u64 len;
};

/* struct user_msghdr */
struct df_msghdr {
	__u64 name;
	__s32 namelen;
	__s32 _pad;
	__u64 iov;
	__u64 iovlen;
	__u64 control;
	__u64 controllen;
	__u32 flags;
	__u32 _pad2;
};

struct df_sys_enter {
	__u64 common;
	__s32 nr;
	__s32 _pad;
	__u64 args[6];
};

struct df_sys_exit {
	__u64 common;
	__s32 nr;
	__s32 _pad;
	__s64 ret;
};

/* Per-CPU counters (and df_unwoken, df_scratch) are updated without atomics: a tracing
 * program never runs while another one is running on the same CPU (bpf_prog_active). */
static __always_inline struct df_socket_stats *stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&df_stats, &zero);
}

static __always_inline int wanted(__u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;
	if (df_cfg_self_pid && tgid == df_cfg_self_pid)
		return 0;
	if (df_cfg_target_pid && tgid != df_cfg_target_pid)
		return 0;
	return 1;
}

/* SSL* -> fd, remembered from earlier calls (SSL_read may be served from OpenSSL's buffer
 * without a syscall). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __s32);
} df_ssl_fds SEC(".maps");

/* Bytes this CPU submitted since it last woke the reader. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} df_unwoken SEC(".maps");

/* The syscall's fd is the transport of the thread's SSL call in progress, if any. */
static __always_inline void note_ssl_fd(struct df_thread *t, __u32 fd)
{
	if (!t->ssl_active || t->ssl_fd == (__s32)fd)
		return;
	t->ssl_fd = (__s32)fd;
	__s32 v = (__s32)fd;
	__s32 *old = bpf_map_lookup_elem(&df_ssl_fds, &t->ssl);
	if (old && *old == v)
		return;
	bpf_map_update_elem(&df_ssl_fds, &t->ssl, &v, BPF_ANY);
}

static __always_inline int save_args(struct df_sys_enter *ctx, __u16 sys, __u64 buf, __u64 count)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!wanted(id))
		return 0;
	struct df_thread *t = thread_slot(id);
	if (!t)
		return 0;
	if (sys != DF_SYS_CONNECT && sys != DF_SYS_ACCEPT && sys != DF_SYS_ACCEPT4)
		note_ssl_fd(t, (__u32)ctx->args[0]);
	t->args.enter_ts = bpf_ktime_get_ns();
	t->args.fd = (__u32)ctx->args[0];
	t->args.buf = buf;
	t->args.count = count;
	t->args.syscall = sys;
	return 0;
}

/* The pending syscall `sys` of the thread, taken (the slot is marked free). */
static __always_inline struct df_thread *take_args(__u64 id, __u16 sys, struct df_args *out)
{
	struct df_thread *t = bpf_map_lookup_elem(&df_threads, &id);
	if (!t)
		return 0;
	if (t->args.syscall != sys) {
		if (t->args.syscall == 0) {
			struct df_socket_stats *st = stats();
			if (st)
				st->enter_missing += 1;
		}
		return 0;
	}
	*out = t->args;
	t->args.syscall = 0;
	return t;
}

/* The head of struct sock_common: daddr, rcv_saddr, hash, dport, num, family (24 bytes on
 * every kernel since 2.6; the offsets are still taken from BTF and checked). */
#define DF_SKC_HEAD 24

/* fd -> struct sock, or NULL when the fd is not an INET TCP/UDP socket; fills `t` (the
 * 5-tuple and protocol) on success. */
static __always_inline struct sock *fd_to_sock(__u32 fd, struct df_sock_tuple *t)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct df_socket_stats *st = stats();
	if (!fdt) {
		if (st)
			st->fd_lookup_failed += 1;
		return 0;
	}
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if (fd >= max)
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f) {
		if (st)
			st->fd_lookup_failed += 1;
		return 0;
	}
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK) {
		if (st)
			st->not_socket += 1;
		return 0;
	}
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	/* One read for addresses, ports and family instead of one per field. */
	__u32 o_d = bpf_core_field_offset(struct sock_common, skc_daddr);
	__u32 o_s = bpf_core_field_offset(struct sock_common, skc_rcv_saddr);
	__u32 o_dp = bpf_core_field_offset(struct sock_common, skc_dport);
	__u32 o_n = bpf_core_field_offset(struct sock_common, skc_num);
	__u32 o_f = bpf_core_field_offset(struct sock_common, skc_family);
	__u16 family;
	__u8 head[DF_SKC_HEAD] = {};
	if (o_d <= DF_SKC_HEAD - 4 && o_s <= DF_SKC_HEAD - 4 && o_dp <= DF_SKC_HEAD - 2 &&
	    o_n <= DF_SKC_HEAD - 2 && o_f <= DF_SKC_HEAD - 2) {
		if (bpf_probe_read_kernel(head, sizeof(head), &sk->__sk_common))
			return 0;
		__builtin_memcpy(&family, &head[o_f], 2);
		__builtin_memcpy(&t->dport, &head[o_dp], 2);
		__builtin_memcpy(&t->sport, &head[o_n], 2);
		__builtin_memcpy(t->saddr, &head[o_s], 4);
		__builtin_memcpy(t->daddr, &head[o_d], 4);
	} else {
		family = BPF_CORE_READ(sk, __sk_common.skc_family);
		t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
		t->dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(t->saddr, &s, 4);
		__builtin_memcpy(t->daddr, &d, 4);
	}
	if (family != AF_INET && family != AF_INET6) {
		if (st)
			st->not_socket += 1;
		return 0;
	}
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
		if (st)
			st->not_socket += 1;
		return 0;
	}
	t->family = family;
	t->l4_proto = (__u8)proto;
	t->dport = __builtin_bswap16(t->dport);
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&t->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	return sk;
}

/* The per-CPU event being built; the tuple is filled by fd_to_sock. */
static __always_inline struct df_event_buf *scratch(void)
{
	__u32 zero = 0;
	struct df_event_buf *e = bpf_map_lookup_elem(&df_scratch, &zero);
	if (e)
		__builtin_memset(&e->hdr.tuple, 0, sizeof(e->hdr.tuple));
	return e;
}

static __always_inline void fill_event(struct df_event_buf *e, __u64 id, struct df_args *a, struct sock *sk,
				       __u8 type, __s64 ret)
{
	struct df_socket_event *h = &e->hdr;
	h->ts_ns = bpf_ktime_get_ns();
	h->enter_ts_ns = a ? a->enter_ts : h->ts_ns;
	h->sock_id = (__u64)sk;
	h->seq = 0;
	h->ret = ret;
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->fd = a ? a->fd : 0;
	h->data_len = 0;
	h->syscall = a ? a->syscall : 0;
	h->event_type = type;
	h->direction = 0;
	h->role = DF_ROLE_UNKNOWN;
	h->source = DF_SRC_SYSCALL;
	h->_pad[0] = 0;
	h->_pad[1] = 0;
	h->syscall_trace_id = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline void submit(void *ctx, struct df_event_buf *e)
{
	__u32 len = e->hdr.data_len;
	if (len > DF_MAX_DATA)
		len = DF_MAX_DATA;
	__u32 size = sizeof(struct df_socket_event) + len;
	struct df_socket_stats *st = stats();
	/* Wake the reader only once this CPU has submitted DF_WAKEUP_BYTES since its last
	 * wakeup: a wakeup per event costs the traced process an irq_work and the reader an epoll
	 * round trip per syscall; the reader polls with a timeout (100 ms in the agent), so quiet
	 * periods are still drained. A per-CPU count instead of bpf_ringbuf_query: no read of the
	 * reader's position, which another core keeps writing. */
	__u32 zero = 0;
	__u64 *unwoken = bpf_map_lookup_elem(&df_unwoken, &zero);
	__u64 flags = DF_RB_NO_WAKEUP;
	if (unwoken) {
		*unwoken += size;
		if (*unwoken >= DF_WAKEUP_BYTES / 2) {
			flags = DF_RB_FORCE_WAKEUP;
			*unwoken = 0;
		}
	}
	long err = bpf_ringbuf_output(&df_events, e, size, flags);
	if (st) {
		if (err)
			st->lost += 1;
		else
			st->events += 1;
	}
}

/* Copies up to `want` bytes of one user buffer at offset `off` of the event data. */
static __always_inline __u32 copy_user(struct df_event_buf *e, __u32 off, __u64 src, __u64 want)
{
	if (off >= DF_MAX_DATA)
		return 0;
	__u32 n = want > DF_MAX_DATA ? DF_MAX_DATA : (__u32)want;
	if (n > DF_MAX_DATA - off)
		n = DF_MAX_DATA - off;
	if (n == 0)
		return 0;
	/* Masks the verifier can see at the call (the compiler may otherwise move or widen
	 * them): off < 4096, size < 8192, inside data[3 * 4096]. */
	__u64 o = off, sz = n;
	asm volatile("%0 &= 4095" : "+r"(o));
	asm volatile("%0 &= 8191" : "+r"(sz));
	if (bpf_probe_read_user(&e->data[o], sz, (const void *)src))
		return 0;
	return n;
}

static __always_inline __u8 sock_role(__u64 key)
{
	struct df_sock_state *s = bpf_map_lookup_elem(&df_socks, &key);
	return s ? s->role : DF_ROLE_UNKNOWN;
}

/* The next DATA sequence number of stream `key`, and its role (one lookup for both). */
static __always_inline __u64 next_seq(__u64 key, __u8 *role)
{
	struct df_sock_state *s = bpf_map_lookup_elem(&df_socks, &key);
	if (s) {
		*role = s->role;
		return __sync_fetch_and_add(&s->seq, 1) + 1;
	}
	*role = DF_ROLE_UNKNOWN;
	struct df_sock_state n = {};
	n.seq = 1;
	bpf_map_update_elem(&df_socks, &key, &n, BPF_NOEXIST);
	return 1;
}

/* The key of a socket's TLS plaintext stream (OpenSSL uprobes): its own sequence, next to the
 * socket's entry in df_socks. Socket addresses are aligned, so the low bit is free. */
static __always_inline __u64 tls_key(__u64 sock_key)
{
	return sock_key ^ 1;
}

/* connect/accept start a new stream on `key`: its state starts afresh. A socket closed without
 * close(2) (process exit, dup2 over it, close_range) leaves its entry behind, and the kernel
 * may hand the same struct sock address to a new socket; keeping that entry would continue the
 * old stream's sequence (seen as 25, 26 instead of 1, 2). */
static __always_inline void set_role(__u64 key, __u8 role)
{
	struct df_sock_state n = {};
	n.role = role;
	bpf_map_update_elem(&df_socks, &key, &n, BPF_ANY);
	__u64 tls = tls_key(key); /* the TLS plaintext stream of the socket starts afresh too */
	bpf_map_delete_elem(&df_socks, &tls);
}

/* Data syscalls: `vec` 0 = plain buffer, 1 = iovec array, 2 = msghdr, 3 = mmsghdr (first). */
static __always_inline int data_exit(void *ctx, __s64 ret, __u16 sys, __u8 dir, int vec)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct df_args args;
	struct df_thread *t = take_args(id, sys, &args);
	if (!t || ret <= 0)
		return 0;
	struct df_event_buf *e = scratch();
	if (!e)
		return 0;
	struct sock *sk = fd_to_sock(args.fd, &e->hdr.tuple);
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	if (t->ssl_active && t->ssl_fd == (__s32)args.fd) {
		t->ssl_sk = key;
		__builtin_memcpy(&t->ssl_tuple, &e->hdr.tuple, sizeof(t->ssl_tuple));
	}
	fill_event(e, id, &args, sk, DF_EV_DATA, ret);
	e->hdr.direction = dir;
	e->hdr.seq = next_seq(key, &e->hdr.role);
	e->hdr.syscall_trace_id = thread_trace_id(t, dir);

	__u64 cap = df_cfg_max_data;
	if (cap > DF_MAX_DATA)
		cap = DF_MAX_DATA;
	__u64 total = (__u64)ret;
	__u64 iov = 0, iovcnt = 0;
	if (vec == 0) {
		e->hdr.data_len = copy_user(e, 0, args.buf, total < cap ? total : cap);
	} else {
		if (vec == 1) {
			iov = args.buf;
			iovcnt = args.count;
		} else {
			struct df_msghdr m = {};
			/* mmsghdr starts with a msghdr; msg_len (bytes of message 0) follows it */
			if (bpf_probe_read_user(&m, sizeof(m), (const void *)args.buf))
				goto out;
			iov = m.iov;
			iovcnt = m.iovlen;
			if (vec == 3) {
				__u32 l0 = 0;
				bpf_probe_read_user(&l0, sizeof(l0), (const void *)(args.buf + sizeof(m)));
				total = l0;
				e->hdr.ret = l0;
			}
		}
		__u32 off = 0;
		__u64 left = total < cap ? total : cap;
#pragma unroll
		for (int i = 0; i < DF_MAX_IOV; i++) {
			if (i >= iovcnt || left == 0)
				break;
			struct df_iovec v = {};
			if (bpf_probe_read_user(&v, sizeof(v), (const void *)(iov + i * sizeof(v))))
				break;
			__u64 want = v.len < left ? v.len : left;
			__u32 got = copy_user(e, off, v.base, want);
			if (got != want)
				break;
			off += got;
			left -= got;
		}
		e->hdr.data_len = off;
	}
out:
	if (e->hdr.data_len < total) {
		struct df_socket_stats *st = stats();
		if (st)
			st->truncated += 1;
	}
	submit(ctx, e);
	return 0;
}

#define ENTER(name, sys, bufarg, cntarg)                                                        \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                              \
	int df_enter_##name(struct df_sys_enter *ctx)                                            \
	{                                                                                        \
		return save_args(ctx, sys, ctx->args[bufarg], ctx->args[cntarg]);                \
	}
#define EXIT(name, sys, dir, vec)                                                               \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                               \
	int df_exit_##name(struct df_sys_exit *ctx)                                              \
	{                                                                                        \
		return data_exit(ctx, ctx->ret, sys, dir, vec);                                  \
	}

ENTER(read, DF_SYS_READ, 1, 2)
EXIT(read, DF_SYS_READ, DF_DIR_INGRESS, 0)
ENTER(write, DF_SYS_WRITE, 1, 2)
EXIT(write, DF_SYS_WRITE, DF_DIR_EGRESS, 0)
ENTER(readv, DF_SYS_READV, 1, 2)
EXIT(readv, DF_SYS_READV, DF_DIR_INGRESS, 1)
ENTER(writev, DF_SYS_WRITEV, 1, 2)
EXIT(writev, DF_SYS_WRITEV, DF_DIR_EGRESS, 1)
ENTER(sendto, DF_SYS_SENDTO, 1, 2)
EXIT(sendto, DF_SYS_SENDTO, DF_DIR_EGRESS, 0)
ENTER(recvfrom, DF_SYS_RECVFROM, 1, 2)
EXIT(recvfrom, DF_SYS_RECVFROM, DF_DIR_INGRESS, 0)
ENTER(sendmsg, DF_SYS_SENDMSG, 1, 2)
EXIT(sendmsg, DF_SYS_SENDMSG, DF_DIR_EGRESS, 2)
ENTER(recvmsg, DF_SYS_RECVMSG, 1, 2)
EXIT(recvmsg, DF_SYS_RECVMSG, DF_DIR_INGRESS, 2)
ENTER(sendmmsg, DF_SYS_SENDMMSG, 1, 2)
EXIT(sendmmsg, DF_SYS_SENDMMSG, DF_DIR_EGRESS, 3)
ENTER(recvmmsg, DF_SYS_RECVMMSG, 1, 2)
EXIT(recvmmsg, DF_SYS_RECVMMSG, DF_DIR_INGRESS, 3)

/* connect/accept/close: role and lifecycle records (no payload). */
ENTER(connect, DF_SYS_CONNECT, 1, 2)
ENTER(accept, DF_SYS_ACCEPT, 1, 2)
ENTER(accept4, DF_SYS_ACCEPT4, 1, 2)

static __always_inline int conn_exit(void *ctx, __s64 ret, __u16 sys)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct df_args args;
	if (!take_args(id, sys, &args))
		return 0;
	int accept = sys != DF_SYS_CONNECT;
	__u32 fd;
	if (accept) {
		if (ret < 0)
			return 0;
		fd = (__u32)ret;
	} else {
		if (ret != 0 && ret != -EINPROGRESS)
			return 0;
		fd = args.fd;
	}
	struct df_event_buf *e = scratch();
	if (!e)
		return 0;
	struct sock *sk = fd_to_sock(fd, &e->hdr.tuple);
	if (!sk)
		return 0;
	__u8 role = accept ? DF_ROLE_SERVER : DF_ROLE_CLIENT;
	set_role((__u64)sk, role);
	fill_event(e, id, &args, sk, accept ? DF_EV_ACCEPT : DF_EV_CONNECT, ret);
	e->hdr.fd = fd;
	e->hdr.role = role;
	submit(ctx, e);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int df_exit_connect(struct df_sys_exit *ctx) { return conn_exit(ctx, ctx->ret, DF_SYS_CONNECT); }
SEC("tracepoint/syscalls/sys_exit_accept")
int df_exit_accept(struct df_sys_exit *ctx) { return conn_exit(ctx, ctx->ret, DF_SYS_ACCEPT); }
SEC("tracepoint/syscalls/sys_exit_accept4")
int df_exit_accept4(struct df_sys_exit *ctx) { return conn_exit(ctx, ctx->ret, DF_SYS_ACCEPT4); }

/* close: resolved at entry, while the fd still points to the socket. */
SEC("tracepoint/syscalls/sys_enter_close")
int df_enter_close(struct df_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!wanted(id))
		return 0;
	__u32 fd = (__u32)ctx->args[0];
	struct df_event_buf *e = scratch();
	if (!e)
		return 0;
	struct sock *sk = fd_to_sock(fd, &e->hdr.tuple);
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct df_args a = {};
	a.enter_ts = bpf_ktime_get_ns();
	a.fd = fd;
	a.syscall = DF_SYS_CLOSE;
	fill_event(e, id, &a, sk, DF_EV_CLOSE, 0);
	e->hdr.role = sock_role(key);
	bpf_map_delete_elem(&df_socks, &key);
	__u64 tls = tls_key(key);
	bpf_map_delete_elem(&df_socks, &tls);
	submit(ctx, e);
	return 0;
}

/* ---- OpenSSL uprobes: plaintext of SSL_write/SSL_read(_ex), attached to libssl ---- */

static __always_inline int ssl_enter(struct pt_regs *ctx, __u16 sys, int ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!wanted(id))
		return 0;
	struct df_thread *t = thread_slot(id);
	if (!t)
		return 0;
	t->ssl_enter_ts = bpf_ktime_get_ns();
	t->ssl = PT_REGS_PARM1(ctx);
	t->ssl_buf = PT_REGS_PARM2(ctx);
	t->ssl_out_len_ptr = ex ? PT_REGS_PARM4(ctx) : 0;
	t->ssl_fd = -1;
	t->ssl_sk = 0;
	t->ssl_syscall = sys;
	t->ssl_active = 1;
	return 0;
}

static __always_inline int ssl_exit(struct pt_regs *ctx, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct df_thread *t = bpf_map_lookup_elem(&df_threads, &id);
	if (!t || !t->ssl_active)
		return 0;
	t->ssl_active = 0;
	__u64 ssl = t->ssl;
	__u64 buf = t->ssl_buf;
	__u64 out_len_ptr = t->ssl_out_len_ptr;
	__s32 fd = t->ssl_fd;
	struct df_args a = {};
	a.enter_ts = t->ssl_enter_ts;
	a.syscall = t->ssl_syscall;
	__s64 ret = (__s64)(int)PT_REGS_RC(ctx);
	if (out_len_ptr) {
		/* _ex (and OpenSSL's internal functions): > 0 on success, the length is in
		 * *out_len */
		if (ret <= 0)
			return 0;
		__u64 n = 0;
		if (bpf_probe_read_user(&n, sizeof(n), (const void *)out_len_ptr))
			return 0;
		ret = (__s64)n;
	}
	if (ret <= 0)
		return 0;
	if (fd < 0) {
		__s32 *f = bpf_map_lookup_elem(&df_ssl_fds, &ssl);
		if (!f)
			return 0;
		fd = *f;
	}
	struct df_event_buf *e = scratch();
	if (!e)
		return 0;
	struct sock *sk;
	if (t->ssl_sk && fd == t->ssl_fd) {
		/* resolved by the nested syscall of this call: same fd, same thread, moments ago */
		sk = (struct sock *)t->ssl_sk;
		__builtin_memcpy(&e->hdr.tuple, &t->ssl_tuple, sizeof(e->hdr.tuple));
	} else {
		sk = fd_to_sock((__u32)fd, &e->hdr.tuple);
	}
	if (!sk)
		return 0;
	a.fd = (__u32)fd;
	fill_event(e, id, &a, sk, DF_EV_DATA, ret);
	/* plaintext is its own stream: sequence under sock ^ 1, role of the socket */
	__u64 key = tls_key((__u64)sk);
	__u8 unused;
	e->hdr.direction = dir;
	e->hdr.role = sock_role((__u64)sk);
	e->hdr.seq = next_seq(key, &unused);
	e->hdr.source = DF_SRC_OPENSSL;
	e->hdr.syscall_trace_id = thread_trace_id(t, dir);
	__u64 cap = df_cfg_max_data;
	if (cap > DF_MAX_DATA)
		cap = DF_MAX_DATA;
	e->hdr.data_len = copy_user(e, 0, buf, (__u64)ret < cap ? (__u64)ret : cap);
	submit(ctx, e);
	return 0;
}

SEC("uprobe")
int df_ssl_write_enter(struct pt_regs *ctx) { return ssl_enter(ctx, DF_SYS_SSL_WRITE, 0); }
SEC("uretprobe")
int df_ssl_write_exit(struct pt_regs *ctx) { return ssl_exit(ctx, DF_DIR_EGRESS); }
SEC("uprobe")
int df_ssl_read_enter(struct pt_regs *ctx) { return ssl_enter(ctx, DF_SYS_SSL_READ, 0); }
SEC("uretprobe")
int df_ssl_read_exit(struct pt_regs *ctx) { return ssl_exit(ctx, DF_DIR_INGRESS); }
SEC("uprobe")
int df_ssl_write_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, DF_SYS_SSL_WRITE, 1); }
SEC("uprobe")
int df_ssl_read_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, DF_SYS_SSL_READ, 1); }
