// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * On-CPU profiler: a perf_event program (software cpu-clock, one event per CPU, sampled at a
 * fixed frequency) records the user and kernel stack ids of the interrupted task in a stack
 * trace map and counts samples per (pid, tid, comm, user stack, kernel stack).
 *
 * Off-CPU profiler: sched_switch records when a task leaves the CPU (with its stack ids);
 * when it comes back, the blocked time is added to the same key in df_offcpu_ns.
 */
#include "vmlinux_min.h"
#include "deepflow_shared.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* 0: every process; otherwise only this tgid. */
const volatile __u32 df_cfg_target_pid = 0;
/* Include the idle task (pid 0). */
const volatile __u32 df_cfg_include_idle = 0;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} df_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 40960);
	__type(key, struct df_stack_key);
	__type(value, __u64);
} df_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 40960);
	__type(key, struct df_stack_key);
	__type(value, __u64);
} df_offcpu_ns SEC(".maps");

struct df_off_start {
	__u64 ts;
	struct df_stack_key key;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct df_off_start);
} df_off_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct df_profile_stats);
} df_pstats SEC(".maps");

static __always_inline struct df_profile_stats *pstats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&df_pstats, &zero);
}

static __always_inline void add(void *map, struct df_stack_key *k, __u64 v)
{
	__u64 *c = bpf_map_lookup_elem(map, k);
	if (c) {
		__sync_fetch_and_add(c, v);
		return;
	}
	if (bpf_map_update_elem(map, k, &v, BPF_NOEXIST)) {
		c = bpf_map_lookup_elem(map, k);
		if (c)
			__sync_fetch_and_add(c, v);
		else {
			struct df_profile_stats *s = pstats();
			if (s)
				__sync_fetch_and_add(&s->dropped, 1);
		}
	}
}

SEC("perf_event")
int df_on_cpu(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = (__u32)id;
	if (tid == 0 && !df_cfg_include_idle)
		return 0;
	if (df_cfg_target_pid && tgid != df_cfg_target_pid)
		return 0;
	struct df_stack_key k = {};
	k.pid = tgid;
	k.tid = tid;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	k.kernel_stack_id = bpf_get_stackid(ctx, &df_stacks, 0);
	k.user_stack_id = bpf_get_stackid(ctx, &df_stacks, BPF_F_USER_STACK);
	struct df_profile_stats *s = pstats();
	if (s) {
		__sync_fetch_and_add(&s->samples, 1);
		if (k.user_stack_id < 0 && k.kernel_stack_id < 0)
			__sync_fetch_and_add(&s->stack_errors, 1);
	}
	add(&df_counts, &k, 1);
	return 0;
}

/* tracepoint/sched/sched_switch, fixed layout of its format file (stable since 4.x; the
 * prev_state type widened to long in 5.x but its offset stayed at 32 on 64-bit). */
struct df_sched_switch {
	__u64 common;
	char prev_comm[16];
	__s32 prev_pid;
	__s32 prev_prio;
	__s64 prev_state;
	char next_comm[16];
	__s32 next_pid;
	__s32 next_prio;
};

SEC("tracepoint/sched/sched_switch")
int df_sched_switch(struct df_sched_switch *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	/* The current task is prev: it leaves the CPU now. */
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = (__u32)id;
	if (tid != 0 && (!df_cfg_target_pid || tgid == df_cfg_target_pid)) {
		struct df_off_start st = {};
		st.ts = now;
		st.key.pid = tgid;
		st.key.tid = tid;
		bpf_get_current_comm(st.key.comm, sizeof(st.key.comm));
		st.key.kernel_stack_id = bpf_get_stackid(ctx, &df_stacks, 0);
		st.key.user_stack_id = bpf_get_stackid(ctx, &df_stacks, BPF_F_USER_STACK);
		bpf_map_update_elem(&df_off_start, &tid, &st, BPF_ANY);
	}
	/* next comes back: account the time it was off the CPU. */
	__u32 next = (__u32)ctx->next_pid;
	if (next == 0)
		return 0;
	struct df_off_start *o = bpf_map_lookup_elem(&df_off_start, &next);
	if (!o)
		return 0;
	struct df_stack_key k = o->key;
	__u64 delta = now > o->ts ? now - o->ts : 0;
	bpf_map_delete_elem(&df_off_start, &next);
	add(&df_offcpu_ns, &k, delta);
	return 0;
}
