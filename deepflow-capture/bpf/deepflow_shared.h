/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Structures shared by the BPF programs (socket_tracer.bpf.c, profiler.bpf.c) and user space.
 *
 * The Rust mirrors live in deepflow-capture/src/ebpf/shared.rs; the test
 * `ebpf::shared::tests::layout_matches_c_header` compiles bpf/layout_check.c against this
 * header with the host C compiler and compares every size and offset. Change both together.
 *
 * Every struct is laid out with explicit padding so that the BPF target and the host agree.
 */
#ifndef DEEPFLOW_SHARED_H
#define DEEPFLOW_SHARED_H

#ifndef DF_HAVE_KERNEL_TYPES
#include <linux/types.h>
#endif

/* Upper bound of payload bytes copied per syscall (the runtime cap is df_cfg_max_data). */
#define DF_MAX_DATA 4096
#define DF_COMM_LEN 16
/* Most iovec segments read for readv/writev/sendmsg/recvmsg. */
#define DF_MAX_IOV 8

/* df_socket_event.event_type */
#define DF_EV_DATA 1
#define DF_EV_CONNECT 2
#define DF_EV_ACCEPT 3
#define DF_EV_CLOSE 4

/* df_socket_event.syscall */
#define DF_SYS_READ 1
#define DF_SYS_WRITE 2
#define DF_SYS_READV 3
#define DF_SYS_WRITEV 4
#define DF_SYS_SENDTO 5
#define DF_SYS_RECVFROM 6
#define DF_SYS_SENDMSG 7
#define DF_SYS_RECVMSG 8
#define DF_SYS_SENDMMSG 9
#define DF_SYS_RECVMMSG 10
#define DF_SYS_CONNECT 11
#define DF_SYS_ACCEPT 12
#define DF_SYS_ACCEPT4 13
#define DF_SYS_CLOSE 14
#define DF_SYS_SSL_WRITE 15
#define DF_SYS_SSL_READ 16

/* df_socket_event.direction */
#define DF_DIR_EGRESS 0
#define DF_DIR_INGRESS 1

/* df_socket_event.role */
#define DF_ROLE_UNKNOWN 0
#define DF_ROLE_CLIENT 1
#define DF_ROLE_SERVER 2

/* df_socket_event.source */
#define DF_SRC_SYSCALL 0
#define DF_SRC_OPENSSL 1

/* Socket 5-tuple seen from the traced process: s* is local, d* is remote. Addresses are in
 * network byte order, IPv4 in the first 4 bytes; ports in host byte order. */
struct df_sock_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;   /* AF_INET (2) or AF_INET6 (10) */
	__u8 l4_proto;  /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 _pad;
};

/* One record of the socket ring buffer: the header, then data_len payload bytes. */
struct df_socket_event {
	__u64 ts_ns;        /* syscall exit, CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 enter_ts_ns;  /* syscall entry */
	__u64 sock_id;      /* identifies the socket while it lives (kernel struct sock address) */
	__u64 seq;          /* per-socket sequence of DATA events, from 1 */
	__s64 ret;          /* syscall result: bytes transferred (DATA) or the new fd (ACCEPT) */
	__u32 pid;          /* tgid */
	__u32 tid;
	__u32 fd;
	__u32 data_len;     /* payload bytes following this header (<= ret) */
	__u16 syscall;      /* DF_SYS_* */
	__u8 event_type;    /* DF_EV_* */
	__u8 direction;     /* DF_DIR_* */
	__u8 role;          /* DF_ROLE_* as known to the kernel side */
	__u8 source;        /* DF_SRC_* */
	__u8 _pad[2];
	char comm[DF_COMM_LEN];
	struct df_sock_tuple tuple;
	/* Thread-level request correlation: a new id when a thread reads after it wrote (a new
	 * request arrives); everything the thread writes until its next such read carries it. */
	__u64 syscall_trace_id;
};

/* Counters of the socket tracer, one per CPU (summed by user space). */
struct df_socket_stats {
	__u64 events;        /* records written to the ring buffer */
	__u64 lost;          /* records dropped because the ring buffer was full */
	__u64 truncated;     /* DATA records whose payload was cut to the cap */
	__u64 not_socket;    /* fds that were not INET sockets (files, pipes, unix sockets) */
	__u64 fd_lookup_failed;
	__u64 enter_missing; /* exits without a recorded entry */
};

/* Key of the profiler's stack counts. */
struct df_stack_key {
	__u32 pid;
	__u32 tid;
	__s32 user_stack_id;   /* -1 (or a negative errno) when not available */
	__s32 kernel_stack_id;
	char comm[DF_COMM_LEN];
};

/* Counters of the profiler. */
struct df_profile_stats {
	__u64 samples;
	__u64 dropped;        /* count map full */
	__u64 stack_errors;   /* bpf_get_stackid failed */
};

#endif /* DEEPFLOW_SHARED_H */
