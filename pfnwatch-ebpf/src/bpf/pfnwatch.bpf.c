// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * pfnwatch's kernel side: fexit programs on the functions that map raw page
 * frames (remap_pfn_range*, vmf_insert_*) and the ones that decide whether a
 * pte in such a mapping is a normal page (vm_normal_page*, folio_walk_start).
 *
 * Every call on a VM_PFNMAP/VM_MIXEDMAP vma is classified (pfnwatch-common's
 * class bits) and counted per CPU; a detail record crosses to user space only
 * for the (hook, class) pairs user space asked for in record_mask.
 *
 * fexit sees the arguments and the return value, so the page-table hooks use
 * fexit alone: a second trampoline on vm_normal_page, which runs for every
 * pte of every fork and munmap in the system, would double the cost for
 * nothing. remap_pfn_range also gets an fentry, because it rewrites the vma
 * (vm_pgoff of a COW mapping, vm_flags) and the state before is the point.
 */
#include <linux/bpf.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "pfnwatch_abi.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Page-table geometry (PFNW_PAGE_SHIFT, PFNW_<level>_SIZE, _PFN_MASK,
 * PFNW_PTE_SPECIAL) comes from pfnwatch-common through the header. */
/* pfn_t (before 6.16) keeps flags in the top bits of the pfn word. */
#define PFN_T_FLAGS_MASK 0xfff0000000000000ull
#define PAGE_MAPPING_ANON 0x1ul
/* enum vm_fault_reason: VM_FAULT_ERROR = OOM|SIGBUS|SIGSEGV|HWPOISON*|FALLBACK */
#define VM_FAULT_ERROR 0x873u

/* Anchors the record type in the object's BTF, where the layout test and
 * tools such as bpftool find it; the programs only see it through pointers. */
const struct pfnwatch_event *const pfnw_event_type = 0;

/* Set by user space before load. */
const volatile __u32 self_tgid = 0;
const volatile __u32 capture_stack = 0;
const volatile __u64 record_mask[PFNW_MASK_WORDS] = {};
/* trace --pid: records only for these pids or tgids (0 of them: everyone). */
const volatile __u32 only_pid_count = 0;
const volatile __u32 only_pids[PFNW_PID_FILTER_SLOTS] = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PFNW_COUNTS_LEN);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PFNW_ERRORS_LEN);
	__type(key, __u32);
	__type(value, __u64);
} errors SEC(".maps");

/* Records lost because the ring buffer was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PFNW_RINGBUF_BYTES);
} events SEC(".maps");

/* The vma as remap_pfn_range found it, keyed by pid_tgid until its fexit. */
struct remap_before {
	__u64 vm_pgoff;
	__u64 vm_flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct remap_before);
} remap_entry SEC(".maps");

/* One observed call, filled by a hook and handed to finish(). */
struct call {
	struct vm_area_struct *vma;
	__u64 vm_flags;
	__u64 addr;
	__u64 pfn;
	__u64 size;
	__u64 entry;
	__s64 ret;
	__u64 pgoff_before;
	__u32 event_flags;
	__u32 level;
	__u16 hook;
	__u16 class;
};

static __always_inline __u64 vma_flags(struct vm_area_struct *vma)
{
	if (bpf_core_field_exists(vma->vm_flags))
		return vma->vm_flags;
	return vma->flags.__vma_flags[0];
}

/* The bytes one entry of a level maps, and the pfn it points at. */
static __always_inline __u64 entry_size(__u32 level)
{
	return level == PFNW_LEVEL_PUD ? PFNW_PUD_SIZE
	     : level == PFNW_LEVEL_PMD ? PFNW_PMD_SIZE
				       : PFNW_PTE_SIZE;
}

static __always_inline __u64 entry_pfn(__u64 entry, __u32 level)
{
	__u64 mask = level == PFNW_LEVEL_PUD ? PFNW_PUD_PFN_MASK
		   : level == PFNW_LEVEL_PMD ? PFNW_PMD_PFN_MASK
					     : PFNW_PTE_PFN_MASK;

	return (entry & mask) >> PFNW_PAGE_SHIFT;
}

/* The anon bit lives in the pointer's low bits. The value is read with a
 * probe read so the verifier sees a number, not a pointer it forbids masking. */
static __always_inline bool mapping_is_anon(struct address_space *mapping)
{
	return (unsigned long)mapping & PAGE_MAPPING_ANON;
}

static __always_inline bool is_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == self_tgid;
}

static __always_inline void bump(void *map, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(map, &idx);

	/* Per-CPU, but a preempted program may share the slot: stay atomic. */
	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Class bits every hook shares: the kind of vma, COW, and the pfn rule. */
static __always_inline __u16 vma_class(struct call *c)
{
	__u16 class = 0;

	if (c->vm_flags & VM_PFNMAP)
		class |= PFNW_CLASS_PFNMAP;
	if (c->vm_flags & VM_MIXEDMAP)
		class |= PFNW_CLASS_MIXEDMAP;
	if ((c->vm_flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE)
		class |= PFNW_CLASS_COW;
	if (c->event_flags & PFNW_EVENT_PFN_KNOWN) {
		__u64 start = c->vma->vm_start;
		/* A huge entry's pfn is that of its first page: so is the rule's. */
		__u64 base = c->level == PFNW_LEVEL_PUD ? c->addr & ~(PFNW_PUD_SIZE - 1)
			   : c->level == PFNW_LEVEL_PMD ? c->addr & ~(PFNW_PMD_SIZE - 1)
							: c->addr;
		__u64 off = (base - start) >> PFNW_PAGE_SHIFT;

		if (c->pfn == c->vma->vm_pgoff + off)
			class |= PFNW_CLASS_PFN_MATCH;
	}
	return class;
}

static __always_inline bool wants_record(__u16 hook, __u16 class)
{
	__u32 word = PFNW_MASK_WORD(hook, class);

	/* clang proves the bound and drops the check, but older verifiers
	 * (6.1) lose it when class is spilled as a u16: keep the check. */
	barrier_var(word);
	if (word >= PFNW_MASK_WORDS)
		return false;
	return record_mask[word] & PFNW_MASK_BIT(class);
}

static __always_inline void fill_file(struct pfnwatch_event *e, struct file *file)
{
	struct inode *inode;
	struct dentry *dentry;

	if (!file)
		return;
	inode = BPF_CORE_READ(file, f_inode);
	e->ino = BPF_CORE_READ(inode, i_ino);
	e->rdev = BPF_CORE_READ(inode, i_rdev);
	e->sdev = BPF_CORE_READ(inode, i_sb, s_dev);
	dentry = BPF_CORE_READ(file, f_path.dentry);
	bpf_probe_read_kernel_str(e->file, sizeof(e->file), BPF_CORE_READ(dentry, d_name.name));
	bpf_probe_read_kernel_str(e->parent, sizeof(e->parent),
				  BPF_CORE_READ(dentry, d_parent, d_name.name));
	e->flags |= PFNW_EVENT_FILE;
}

static __always_inline void send(void *ctx, struct call *c)
{
	struct vm_area_struct *vma = c->vma;
	struct pfnwatch_event *e;
	__u64 pid_tgid;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		bump(&drops, 0);
		return;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->vm_flags = c->vm_flags;
	e->vm_start = vma->vm_start;
	e->vm_end = vma->vm_end;
	e->vm_pgoff = vma->vm_pgoff;
	e->pgoff_before = c->pgoff_before;
	e->addr = c->addr;
	e->pfn = c->pfn;
	e->size = c->size;
	e->entry = c->entry;
	e->ret = c->ret;
	e->ino = 0;
	e->rdev = 0;
	e->sdev = 0;
	e->pid = (__u32)pid_tgid;
	e->tgid = pid_tgid >> 32;
	e->hook = c->hook;
	e->class = c->class;
	e->flags = c->event_flags;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->file[0] = 0;
	e->parent[0] = 0;
	fill_file(e, vma->vm_file);
	e->level = c->level;
	e->stack_bytes = 0;
	if (capture_stack) {
		long n = bpf_get_stack(ctx, e->stack, sizeof(e->stack), 0);

		if (n > 0)
			e->stack_bytes = n;
	}
	bpf_ringbuf_submit(e, 0);
}

/* Only asked once a record is wanted: the counters see every process. The
 * verifier knows only_pid_count (frozen rodata) and drops the loop when 0. */
static __always_inline bool pid_wanted(void)
{
	__u64 pid_tgid;

	if (!only_pid_count)
		return true;
	pid_tgid = bpf_get_current_pid_tgid();
	for (int i = 0; i < PFNW_PID_FILTER_SLOTS; i++) {
		if (i >= only_pid_count)
			break;
		if (only_pids[i] == (__u32)pid_tgid || only_pids[i] == pid_tgid >> 32)
			return true;
	}
	return false;
}

/* Count the call, count its errno, and send a record if asked to. */
static __always_inline void finish(void *ctx, struct call *c)
{
	bump(&counts, PFNW_COUNTS_INDEX(c->hook, c->class));
	if ((c->class & PFNW_CLASS_ERROR) && c->ret < 0) {
		__u64 err = -c->ret;

		bump(&errors, PFNW_ERRORS_INDEX(c->hook, err));
	}
	if (wants_record(c->hook, c->class) && pid_wanted())
		send(ctx, c);
}

/*
 * One page-table entry a hook saw: vm_normal_page() and friends looking it
 * up in a pfn mapping, or the kernel reporting it as a bad page map. The
 * lookups run for every pte of every fork and munmap, so they return after
 * one load unless the vma is a pfn mapping; bad-map reports are rare by
 * definition and come from vmas that are no pfn mapping at all, so every
 * one counts (and its page, which the kernel calls bad, is not read).
 */
static __always_inline int entry_seen(void *ctx, __u16 hook, struct vm_area_struct *vma,
				      __u64 addr, __u64 entry, __u32 level, void *page)
{
	bool bad_map = pfnw_hook_family(hook) == PFNW_FAMILY_BAD_MAP;
	struct call c = {};

	c.vm_flags = vma_flags(vma);
	if (!bad_map && !(c.vm_flags & (VM_PFNMAP | VM_MIXEDMAP)))
		return 0;
	if (is_self())
		return 0;
	c.vma = vma;
	c.hook = hook;
	c.addr = addr;
	c.entry = entry;
	c.level = level;
	c.size = entry_size(level);
	c.pfn = entry_pfn(entry, level);
	c.event_flags = PFNW_EVENT_PFN_KNOWN;
	c.ret = page != 0;
	c.class = vma_class(&c);
	if (entry & PFNW_PTE_SPECIAL)
		c.class |= PFNW_CLASS_SPECIAL;
	if (!page)
		c.class |= PFNW_CLASS_NO_PAGE;
	else if (!bad_map && mapping_is_anon(BPF_CORE_READ((struct page *)page, mapping)))
		c.class |= PFNW_CLASS_ANON;
	finish(ctx, &c);
	return 0;
}

SEC("fexit/vm_normal_page")
int BPF_PROG(vm_normal_page_exit, struct vm_area_struct *vma, unsigned long addr, __u64 pte,
	     struct page *page)
{
	return entry_seen(ctx, PFNW_HOOK_VM_NORMAL_PAGE, vma, addr, pte, PFNW_LEVEL_PTE, page);
}

SEC("fexit/vm_normal_page_pmd")
int BPF_PROG(vm_normal_page_pmd_exit, struct vm_area_struct *vma, unsigned long addr, __u64 pmd,
	     struct page *page)
{
	return entry_seen(ctx, PFNW_HOOK_VM_NORMAL_PAGE_PMD, vma, addr, pmd, PFNW_LEVEL_PMD, page);
}

/* 7.x: folio_walk_start's pud level (6.12 skips special puds before any lookup). */
SEC("fexit/vm_normal_page_pud")
int BPF_PROG(vm_normal_page_pud_exit, struct vm_area_struct *vma, unsigned long addr, __u64 pud,
	     struct page *page)
{
	return entry_seen(ctx, PFNW_HOOK_VM_NORMAL_PAGE_PUD, vma, addr, pud, PFNW_LEVEL_PUD, page);
}

SEC("fexit/folio_walk_start")
int BPF_PROG(folio_walk_start_exit, struct folio_walk *fw, struct vm_area_struct *vma,
	     unsigned long addr, unsigned int fw_flags, struct folio *folio)
{
	struct call c = {};

	c.vm_flags = vma_flags(vma);
	if (!(c.vm_flags & (VM_PFNMAP | VM_MIXEDMAP)))
		return 0;
	if (is_self())
		return 0;
	c.vma = vma;
	c.hook = PFNW_HOOK_FOLIO_WALK_START;
	c.addr = addr;
	c.size = PFNW_PTE_SIZE;
	c.ret = folio != 0;
	/* fw is only filled in when a folio is returned. */
	if (folio) {
		int level = fw->level;

		if (level == bpf_core_enum_value(enum folio_walk_level, FW_LEVEL_PMD))
			c.level = PFNW_LEVEL_PMD;
		else if (level == bpf_core_enum_value(enum folio_walk_level, FW_LEVEL_PUD))
			c.level = PFNW_LEVEL_PUD;
		c.size = entry_size(c.level);
		c.entry = fw->pte.pte;
		c.pfn = entry_pfn(c.entry, c.level);
		c.event_flags = PFNW_EVENT_PFN_KNOWN;
	}
	c.class = vma_class(&c);
	if (!folio)
		c.class |= PFNW_CLASS_NO_PAGE;
	else {
		if (c.entry & PFNW_PTE_SPECIAL)
			c.class |= PFNW_CLASS_SPECIAL;
		if (mapping_is_anon(BPF_CORE_READ(folio, mapping)))
			c.class |= PFNW_CLASS_ANON;
	}
	finish(ctx, &c);
	return 0;
}

/* Mapping hooks: a driver puts pfns into a vma. Rare, so no vma filter. */
static __always_inline int mapped(void *ctx, __u16 hook, struct vm_area_struct *vma, __u64 addr,
				  __u64 pfn, __u64 size, __s64 ret, bool failed)
{
	struct call c = {};

	if (is_self())
		return 0;
	c.vma = vma;
	c.vm_flags = vma_flags(vma);
	c.hook = hook;
	c.addr = addr;
	c.pfn = pfn;
	c.size = size;
	c.level = size == PFNW_PUD_SIZE ? PFNW_LEVEL_PUD : size == PFNW_PMD_SIZE ? PFNW_LEVEL_PMD : PFNW_LEVEL_PTE;
	c.ret = ret;
	c.event_flags = PFNW_EVENT_PFN_KNOWN;
	if (hook == PFNW_HOOK_REMAP_PFN_RANGE) {
		__u64 key = bpf_get_current_pid_tgid();
		struct remap_before *before = bpf_map_lookup_elem(&remap_entry, &key);

		if (before) {
			c.pgoff_before = before->vm_pgoff;
			c.event_flags |= PFNW_EVENT_PGOFF_BEFORE;
			bpf_map_delete_elem(&remap_entry, &key);
		}
	}
	c.class = vma_class(&c);
	/* Rule 3: a remap of a COW mapping must cover the whole vma. */
	if (pfnw_hook_family(hook) == PFNW_FAMILY_REMAP &&
	    (addr != vma->vm_start || addr + size != vma->vm_end))
		c.class |= PFNW_CLASS_PARTIAL;
	if (failed)
		c.class |= PFNW_CLASS_ERROR;
	finish(ctx, &c);
	return 0;
}

SEC("fentry/remap_pfn_range")
int BPF_PROG(remap_pfn_range_entry, struct vm_area_struct *vma)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct remap_before before = {};

	if (is_self())
		return 0;
	before.vm_pgoff = vma->vm_pgoff;
	before.vm_flags = vma_flags(vma);
	bpf_map_update_elem(&remap_entry, &key, &before, BPF_ANY);
	return 0;
}

SEC("fexit/remap_pfn_range")
int BPF_PROG(remap_pfn_range_exit, struct vm_area_struct *vma, unsigned long addr,
	     unsigned long pfn, unsigned long size, __u64 prot, int ret)
{
	return mapped(ctx, PFNW_HOOK_REMAP_PFN_RANGE, vma, addr, pfn, size, ret, ret < 0);
}

SEC("fexit/remap_pfn_range_complete")
int BPF_PROG(remap_pfn_range_complete_exit, struct vm_area_struct *vma,
	     struct mmap_action *action, int ret)
{
	return mapped(ctx, PFNW_HOOK_REMAP_PFN_RANGE_COMPLETE, vma, action->remap.start,
		      action->remap.start_pfn, action->remap.size, ret, ret < 0);
}

SEC("fexit/vmf_insert_pfn_prot")
int BPF_PROG(vmf_insert_pfn_prot_exit, struct vm_area_struct *vma, unsigned long addr,
	     unsigned long pfn, __u64 pgprot, unsigned int ret)
{
	return mapped(ctx, PFNW_HOOK_VMF_INSERT_PFN_PROT, vma, addr, pfn, PFNW_PTE_SIZE, ret,
		      ret & VM_FAULT_ERROR);
}

SEC("fexit/vmf_insert_mixed")
int BPF_PROG(vmf_insert_mixed_exit, struct vm_area_struct *vma, unsigned long addr, __u64 pfn,
	     unsigned int ret)
{
	return mapped(ctx, PFNW_HOOK_VMF_INSERT_MIXED, vma, addr, pfn & ~PFN_T_FLAGS_MASK,
		      PFNW_PTE_SIZE, ret, ret & VM_FAULT_ERROR);
}

/*
 * Huge fault-time inserts (6.12+; 6.1 has them only as inline wrappers of
 * *_prot functions): one special pmd or pud maps 2 MiB or 1 GiB of pfns,
 * as vfio-pci does for BARs. The pfn arrives as a pfn_t until 6.16 (flags
 * in the top bits) and as a plain pfn after: the mask serves both.
 */
static __always_inline int huge_insert(void *ctx, __u16 hook, struct vm_fault *vmf, __u64 pfn,
				       __u64 size, unsigned int ret)
{
	return mapped(ctx, hook, vmf->vma, vmf->address & ~(size - 1), pfn & ~PFN_T_FLAGS_MASK,
		      size, ret, ret & VM_FAULT_ERROR);
}

SEC("fexit/vmf_insert_pfn_pmd")
int BPF_PROG(vmf_insert_pfn_pmd_exit, struct vm_fault *vmf, __u64 pfn, bool write,
	     unsigned int ret)
{
	return huge_insert(ctx, PFNW_HOOK_VMF_INSERT_PFN_PMD, vmf, pfn, PFNW_PMD_SIZE, ret);
}

SEC("fexit/vmf_insert_pfn_pud")
int BPF_PROG(vmf_insert_pfn_pud_exit, struct vm_fault *vmf, __u64 pfn, bool write,
	     unsigned int ret)
{
	return huge_insert(ctx, PFNW_HOOK_VMF_INSERT_PFN_PUD, vmf, pfn, PFNW_PUD_SIZE, ret);
}

/* The kernel reporting a bad page map itself: print_bad_pte() until 6.17,
 * print_bad_page_map() from 6.18. */
SEC("fentry/print_bad_pte")
int BPF_PROG(print_bad_pte_entry, struct vm_area_struct *vma, unsigned long addr, __u64 pte,
	     struct page *page)
{
	return entry_seen(ctx, PFNW_HOOK_PRINT_BAD_PTE, vma, addr, pte, PFNW_LEVEL_PTE, page);
}

SEC("fentry/print_bad_page_map")
int BPF_PROG(print_bad_page_map_entry, struct vm_area_struct *vma, unsigned long addr,
	     __u64 entry, struct page *page, int level)
{
	/* enum pgtable_level: PTE 0, PMD 1, PUD 2, as in pfnwatch_event.level. */
	return entry_seen(ctx, PFNW_HOOK_PRINT_BAD_PAGE_MAP, vma, addr, entry, level, page);
}
