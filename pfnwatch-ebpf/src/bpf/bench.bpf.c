// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * The yardstick for `cargo xtask bench`: an fexit program on vm_normal_page
 * that does nothing. Attached alone, it costs what any fexit program on that
 * function costs (the trampoline, saving the arguments and the return value,
 * calling the original); pfnwatch's own program costs that plus its body, so
 * pfnwatch against this program is the cost of pfnwatch's code and nothing
 * else.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("fexit/vm_normal_page")
int empty_exit(void *ctx)
{
	return 0;
}
