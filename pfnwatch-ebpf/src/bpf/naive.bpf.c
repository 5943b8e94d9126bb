// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * `cargo xtask bench`'s naive peer: what a first tracer of vm_normal_page
 * would do, sending every call through a ring buffer for user space to
 * classify and count. No filtering, no aggregation in the kernel, no call
 * path (that would only make it dearer). Never loaded by pfnwatch itself.
 */
#include <linux/bpf.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct naive_record {
	__u64 ts_ns;
	__u64 pid_tgid;
	__u64 vm_flags;
	__u64 vm_start;
	__u64 addr;
	__u64 pte;
	__u64 page;
	char comm[16];
};

/* The size pfnwatch's own ring buffer has by default. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} naive_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} naive_lost SEC(".maps");

SEC("fexit/vm_normal_page")
int naive_exit(__u64 *ctx)
{
	struct vm_area_struct *vma = (void *)ctx[0];
	struct naive_record *r;
	__u32 zero = 0;

	r = bpf_ringbuf_reserve(&naive_events, sizeof(*r), 0);
	if (!r) {
		__u64 *lost = bpf_map_lookup_elem(&naive_lost, &zero);

		if (lost)
			*lost += 1;
		return 0;
	}
	r->ts_ns = bpf_ktime_get_ns();
	r->pid_tgid = bpf_get_current_pid_tgid();
	/* 7.x keeps the flags in a bitmap beside the old name. */
	if (bpf_core_field_exists(vma->vm_flags))
		r->vm_flags = BPF_CORE_READ(vma, vm_flags);
	else
		r->vm_flags = BPF_CORE_READ(vma, flags.__vma_flags[0]);
	r->vm_start = BPF_CORE_READ(vma, vm_start);
	r->addr = ctx[1];
	r->pte = ctx[2];
	r->page = ctx[3];
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	bpf_ringbuf_submit(r, 0);
	return 0;
}
