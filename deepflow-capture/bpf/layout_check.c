/* Prints the size and field offsets of the shared structs (host compiler), one per line:
 * "struct.field offset" and "struct size". Used by ebpf::shared::tests. */
#include <stdio.h>
#include <stddef.h>
#include "deepflow_shared.h"

#define S(t) printf(#t " %zu\n", sizeof(struct t))
#define F(t, f) printf(#t "." #f " %zu\n", offsetof(struct t, f))

int main(void)
{
	S(df_sock_tuple);
	F(df_sock_tuple, saddr); F(df_sock_tuple, daddr); F(df_sock_tuple, sport);
	F(df_sock_tuple, dport); F(df_sock_tuple, family); F(df_sock_tuple, l4_proto);
	S(df_socket_event);
	F(df_socket_event, ts_ns); F(df_socket_event, enter_ts_ns); F(df_socket_event, sock_id);
	F(df_socket_event, seq); F(df_socket_event, ret); F(df_socket_event, pid);
	F(df_socket_event, tid); F(df_socket_event, fd); F(df_socket_event, data_len);
	F(df_socket_event, syscall); F(df_socket_event, event_type); F(df_socket_event, direction);
	F(df_socket_event, role); F(df_socket_event, source); F(df_socket_event, comm);
	F(df_socket_event, tuple); F(df_socket_event, syscall_trace_id);
	S(df_socket_stats);
	F(df_socket_stats, events); F(df_socket_stats, lost); F(df_socket_stats, truncated);
	F(df_socket_stats, not_socket); F(df_socket_stats, fd_lookup_failed);
	F(df_socket_stats, enter_missing);
	S(df_stack_key);
	F(df_stack_key, pid); F(df_stack_key, tid); F(df_stack_key, user_stack_id);
	F(df_stack_key, kernel_stack_id); F(df_stack_key, comm);
	S(df_profile_stats);
	F(df_profile_stats, samples); F(df_profile_stats, dropped); F(df_profile_stats, stack_errors);
	printf("DF_MAX_DATA %d\nDF_COMM_LEN %d\n", DF_MAX_DATA, DF_COMM_LEN);
	return 0;
}
