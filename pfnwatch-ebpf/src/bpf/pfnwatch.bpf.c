// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * pfnwatch's kernel side: programs on the functions that map raw page frames
 * (remap_pfn_range*, vmf_insert_*, vm_insert_page*), the ones that decide
 * whether an entry in such a mapping is a normal page (vm_normal_page*,
 * folio_walk_start, follow_pfnmap_start), the kernel's own bad-page-map
 * report, and the life of every VM_PFNMAP/VM_MIXEDMAP vma (created at mmap
 * or fork, gone when freed).
 *
 * Every call on a VM_PFNMAP/VM_MIXEDMAP vma is classified (pfnwatch-common's
 * class bits) and counted per CPU; a detail record crosses to user space only
 * for the (hook, class) pairs user space asked for in record_mask.
 *
 * fexit sees the arguments and the return value, so the page-table hooks use
 * fexit alone: a second trampoline on vm_normal_page, which runs for every
 * pte of every fork and munmap in the system, would double the cost for
 * nothing. Two kinds of call get an fentry: remap_pfn_range, because it
 * rewrites the vma (vm_pgoff of a COW mapping, vm_flags) and the state
 * before is the point; and the pfn inserts, because on a COW VM_PFNMAP they
 * BUG() before any fexit could run, and the record is then the only trace
 * that names the driver.
 */
#include <linux/bpf.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "pfnwatch_abi.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* pfn_t (before 6.16) keeps flags in the top bits of the pfn word. */
#define PFN_T_FLAGS_MASK 0xfff0000000000000ull
#define PAGE_MAPPING_ANON 0x1ul
/* enum vm_fault_reason: VM_FAULT_ERROR = OOM|SIGBUS|SIGSEGV|HWPOISON*|FALLBACK */
#define VM_FAULT_ERROR 0x873u
#define PAGE_ALIGN(x) (((x) + geometry.pte_size - 1) & ~(geometry.pte_size - 1))

/* Anchors the record type in the object's BTF, where the layout test and
 * tools such as bpftool find it; the programs only see it through pointers. */
const struct pfnwatch_event *const pfnw_event_type = 0;

/* Set by user space before load. */
/* The running kernel's page-table layout (pfnwatch-common's pgtable.rs:
 * x86-64, or arm64 with its page size and LPA2), so one object serves
 * every architecture; the verifier sees the values as constants. */
const volatile struct pfnw_geometry geometry = {};
const volatile __u32 self_tgid = 0;
const volatile __u32 capture_stack = 0;
const volatile __u64 record_mask[PFNW_MASK_WORDS] = {};
/* The (hook, class) pairs that may be a warning or critical hit: their
 * records go to urgent_events. */
const volatile __u64 urgent_mask[PFNW_MASK_WORDS] = {};
/* trace --pid: records only for these pids or tgids (0 of them: everyone). */
const volatile __u32 only_pid_count = 0;
const volatile __u32 only_pids[PFNW_PID_FILTER_SLOTS] = {};
/*
 * Kernel addresses from /proc/kallsyms (0: unknown). None of them is a BTF
 * variable on Debian's kernels, and aya cannot resolve __ksym externs, so
 * user space looks them up and the programs read the values once.
 */
const volatile __u64 physical_mask_addr = 0; /* x86 physical_mask */
const volatile __u64 zero_pfn_addr = 0;      /* zero_pfn (6.x), zero_page_pfn (7.x) */
const volatile __u64 special_mapping_vmops = 0; /* &special_mapping_vmops: vDSO/vvar */
/* file_operations of kernel subsystems whose pfn mappings no lookup rule
 * above info can hit (perf and BPF ring buffers, io_uring rings; README
 * "Cost"): their mappings do not call the lookup programs in. */
const volatile __u64 safe_fops[PFNW_SAFE_FOPS_SLOTS] = {};

/* The values behind the addresses above, read on first use. */
__u64 physical_mask = 0;
__u64 zero_pfn = 0;
__u32 kernel_values_read = 0;

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

/* What could not be kept: PFNW_LOSS_* slots (ring buffer full, inventory full). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PFNW_LOSS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PFNW_RINGBUF_BYTES);
} events SEC(".maps");

/* Records that may be a warning or critical hit, apart: a flood of info
 * hits and inventory records fills events, never this. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PFNW_URGENT_RINGBUF_BYTES);
} urgent_events SEC(".maps");

/* The page-table lookups attach on demand: PFNW_LOOKUPS_WATCHED counts the
 * live watched vmas, PFNW_LOOKUPS_ATTACHED says whether user space has the
 * lookups attached. The first watched vma while they are not wakes user
 * space through lookup_wake with the time it was created. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PFNW_LOOKUP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lookups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PFNW_LOOKUP_WAKE_BYTES);
} lookup_wake SEC(".maps");

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

/* The inventory: every live VM_PFNMAP/VM_MIXEDMAP vma pfnwatch saw created,
 * by address, with the id its records carry (the address itself is a
 * kernel pointer and stays in the kernel). */
/* What the inventory keeps of a vma: its id, and what tells a vma announced
 * again (mprotect) from a new one the allocator put at a freed one's
 * address, whose free pfnwatch did not see. */
struct tracked {
	__u64 id;
	__u64 mm;
	__u64 start;
	__u64 end;
	/* Counted in PFNW_LOOKUPS_WATCHED. */
	__u64 watched;
	/* The walk that last found it (PFNW_LOOKUPS_WALK; at creation, the
	 * latest one): a vma two walks in a row did not find is gone. */
	__u64 seen;
	/* Its vm_flags when announced: a gone record's class. */
	__u64 vm_flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PFNW_INVENTORY_SLOTS);
	__type(key, __u64);
	__type(value, struct tracked);
} inventory SEC(".maps");

/* The last inventory id handed out. */
__u64 inventory_ids = 0;

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
	__u64 vma_id;
	__u32 event_flags;
	__u32 level;
	__u16 hook;
	__u16 class;
	/* The kernel is about to BUG(): wake the reader at once. */
	bool urgent;
	/* The task the call is about when it is not the current one (a walk
	 * of every task's vmas); NULL: the current task. */
	struct task_struct *task;
};

static __always_inline __u64 vma_flags(struct vm_area_struct *vma)
{
	if (bpf_core_field_exists(vma->vm_flags))
		return vma->vm_flags;
	return vma->flags.__vma_flags[0];
}

static __always_inline bool is_cow(__u64 flags)
{
	return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE;
}

static __always_inline bool is_pfn_mapping(__u64 flags)
{
	return flags & (VM_PFNMAP | VM_MIXEDMAP);
}

/* Reads physical_mask and the zero pfn once; both are fixed after boot. */
static __always_inline void read_kernel_values(void)
{
	__u64 v;

	if (kernel_values_read)
		return;
	v = PFNW_PHYSICAL_MASK_DEFAULT;
	if (physical_mask_addr &&
	    bpf_probe_read_kernel(&v, sizeof(v), (void *)physical_mask_addr) != 0)
		v = PFNW_PHYSICAL_MASK_DEFAULT;
	physical_mask = v;
	v = 0;
	if (zero_pfn_addr && bpf_probe_read_kernel(&v, sizeof(v), (void *)zero_pfn_addr) != 0)
		v = 0;
	zero_pfn = v;
	kernel_values_read = 1;
}

/* The bytes one entry of a level maps. */
static __always_inline __u64 entry_size(__u32 level)
{
	return level == PFNW_LEVEL_PUD ? geometry.pud_size
	     : level == PFNW_LEVEL_PMD ? geometry.pmd_size
				       : geometry.pte_size;
}

/*
 * The pfn an entry points at, as the kernel's pte_pfn()/pmd_pfn()/pud_pfn()
 * read it: on x86 a PROT_NONE entry (present bit clear, not empty) holds its
 * pfn bits inverted (the L1TF mitigation, protnone_mask()), and
 * physical_mask leaves out the memory-encryption bits (SME C-bit, TDX
 * shared bit, vTOM); arm64's 52-bit addresses keep their top bits apart.
 * pfnwatch-common's Geometry::pfn is the same algorithm, unit-tested.
 */
static __always_inline __u64 entry_pfn(__u64 entry, __u32 level)
{
	__u64 low, high;

	read_kernel_values();
	if (geometry.invert_unless && entry && !(entry & geometry.invert_unless))
		entry = ~entry;
	low = entry & geometry.pfn_mask & ~(entry_size(level) - 1);
	/* 64 KiB pages and LPA2 only: on the others the verifier, which knows
	 * the geometry (frozen rodata), removes the branch. */
	high = 0;
	if (geometry.pfn_high_mask)
		high = (entry & geometry.pfn_high_mask) << geometry.pfn_high_shift;
	return ((low | high) & physical_mask) >> geometry.page_shift;
}

/* The anon bit lives in the pointer's low bits. The value is read with a
 * probe read so the verifier sees a number, not a pointer it forbids masking. */
static __always_inline bool mapping_is_anon(struct address_space *mapping)
{
	return (unsigned long)mapping & PAGE_MAPPING_ANON;
}

/* The call's pid (low half) and tgid (high half), as
 * bpf_get_current_pid_tgid() has them. */
static __always_inline __u64 call_pid_tgid(struct call *c)
{
	/* Out of c first: BPF_CORE_READ would relocate c->task against the
	 * kernel's BTF too, which has no struct call. */
	struct task_struct *task = c->task;

	if (task)
		return (__u64)BPF_CORE_READ(task, tgid) << 32 | (__u32)BPF_CORE_READ(task, pid);
	return bpf_get_current_pid_tgid();
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
	if (is_cow(c->vm_flags))
		class |= PFNW_CLASS_COW;
	if (c->event_flags & PFNW_EVENT_PFN_KNOWN) {
		__u64 start = c->vma->vm_start;
		/* A huge entry's pfn is that of its first page: so is the rule's. */
		__u64 base = c->addr & ~(entry_size(c->level) - 1);
		__u64 off = (base - start) >> geometry.page_shift;

		if (c->pfn == c->vma->vm_pgoff + off)
			class |= PFNW_CLASS_PFN_MATCH;
	}
	return class;
}

/* Whether (hook, class) is in a record mask. clang proves the bound and
 * drops the check, but older verifiers (6.1) lose it when class is spilled
 * as a u16: keep the check. */
#define IN_MASK(mask, hook, class)                                      \
	({                                                              \
		__u32 word_ = PFNW_MASK_WORD(hook, class);              \
		barrier_var(word_);                                     \
		word_ < PFNW_MASK_WORDS && ((mask)[word_] & PFNW_MASK_BIT(class)); \
	})

static __always_inline bool wants_record(__u16 hook, __u16 class)
{
	return IN_MASK(record_mask, hook, class);
}

/* A record's slot: urgent ones (a possible warning or critical hit, or the
 * kernel about to BUG) in their own ring first, then in the shared one.
 * A record that finds no room is counted lost in its kind's slot. */
/* Without call paths a record stops before its stack: about half the
 * bytes, so twice the records fit a ring (user space decodes both). The
 * verifier knows capture_stack (frozen rodata), so the size is a constant. */
#define EVENT_BYTES                                                                  \
	(capture_stack ? sizeof(struct pfnwatch_event) :                             \
			 __builtin_offsetof(struct pfnwatch_event, stack))

static __always_inline struct pfnwatch_event *reserve(__u16 hook, __u16 class, bool bug)
{
	struct pfnwatch_event *e;
	bool urgent = bug || IN_MASK(urgent_mask, hook, class);

	if (urgent) {
		e = bpf_ringbuf_reserve(&urgent_events, EVENT_BYTES, 0);
		if (e)
			return e;
	}
	e = bpf_ringbuf_reserve(&events, EVENT_BYTES, 0);
	if (!e)
		bump(&drops, urgent ? PFNW_LOSS_URGENT : PFNW_LOSS_RINGBUF);
	return e;
}

static __always_inline void fill_file(struct pfnwatch_event *e, struct file *file)
{
	struct inode *inode;
	struct dentry *dentry;
	const struct file_operations *fop;
	struct module *owner;

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
	/* Who maps it: the module that owns the file's operations, and its
	 * mmap handler (7.x converted drivers have mmap_prepare instead). */
	fop = BPF_CORE_READ(file, f_op);
	e->mmap_fn = (__u64)BPF_CORE_READ(fop, mmap);
	if (!e->mmap_fn && bpf_core_field_exists(fop->mmap_prepare))
		e->mmap_fn = (__u64)BPF_CORE_READ(fop, mmap_prepare);
	owner = BPF_CORE_READ(fop, owner);
	if (owner)
		bpf_probe_read_kernel_str(e->module, sizeof(e->module), owner->name);
	e->flags |= PFNW_EVENT_FILE;
}

static __always_inline void send(void *ctx, struct call *c)
{
	struct vm_area_struct *vma = c->vma;
	const struct vm_operations_struct *ops;
	struct pfnwatch_event *e;
	__u64 pid_tgid;

	e = reserve(c->hook, c->class, c->urgent);
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	/* Without a vma (a free found by a walk) no task is known either:
	 * the walk runs in pfnwatch. */
	if (!vma) {
		pid_tgid = 0;
		e->cgroup_id = 0;
		e->vm_start = c->addr;
		e->vm_end = c->addr + c->size;
		e->vm_pgoff = 0;
	} else {
		pid_tgid = call_pid_tgid(c);
		if (c->task) {
			struct task_struct *task = c->task;

			e->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
		} else {
			e->cgroup_id = bpf_get_current_cgroup_id();
		}
		e->vm_start = BPF_CORE_READ(vma, vm_start);
		e->vm_end = BPF_CORE_READ(vma, vm_end);
		e->vm_pgoff = BPF_CORE_READ(vma, vm_pgoff);
	}
	e->vm_flags = c->vm_flags;
	e->pgoff_before = c->pgoff_before;
	e->addr = c->addr;
	e->pfn = c->pfn;
	e->size = c->size;
	e->entry = c->entry;
	e->ret = c->ret;
	e->ino = 0;
	e->mmap_fn = 0;
	e->vma_id = c->vma_id;
	/* Any record of a vma the inventory knows names it: a vma mapped anew
	 * at a freed one's address is told apart (once-per-vma alerts). */
	if (!e->vma_id && vma) {
		__u64 key = (__u64)vma;
		struct tracked *known = bpf_map_lookup_elem(&inventory, &key);

		if (known)
			e->vma_id = known->id;
	}
	e->rdev = 0;
	e->sdev = 0;
	e->pid = (__u32)pid_tgid;
	e->tgid = pid_tgid >> 32;
	e->hook = c->hook;
	e->class = c->class;
	e->flags = c->event_flags;
	e->comm[0] = 0;
	e->file[0] = 0;
	e->parent[0] = 0;
	e->module[0] = 0;
	e->fault_fn = 0;
	e->level = c->level;
	e->page_shift = geometry.page_shift;
	e->stack_bytes = 0;
	if (!vma) {
		bpf_ringbuf_submit(e, 0);
		return;
	}
	if (c->task)
		bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), c->task->comm);
	else
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* The fault handler names the driver even where no file does. */
	ops = BPF_CORE_READ(vma, vm_ops);
	e->fault_fn = (__u64)BPF_CORE_READ(ops, fault);
	if (!e->fault_fn)
		e->fault_fn = (__u64)BPF_CORE_READ(ops, huge_fault);
	fill_file(e, BPF_CORE_READ(vma, vm_file));
	/* A walk's call path is pfnwatch's own read(): nothing to say. */
	if (capture_stack && !c->task) {
		long n = bpf_get_stack(ctx, e->stack, sizeof(e->stack), 0);

		if (n > 0)
			e->stack_bytes = n;
	}
	bpf_ringbuf_submit(e, c->urgent ? BPF_RB_FORCE_WAKEUP : 0);
}

/* Only asked once a record is wanted: the counters see every process. The
 * verifier knows only_pid_count (frozen rodata) and drops the loop when 0. */
static __always_inline bool pid_wanted(struct call *c)
{
	__u64 pid_tgid;

	if (!only_pid_count)
		return true;
	pid_tgid = call_pid_tgid(c);
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
	/* A walk found the vma: no call of the hook's function to count. */
	if (!(c->event_flags & PFNW_EVENT_EXISTING))
		bump(&counts, PFNW_COUNTS_INDEX(c->hook, c->class));
	if ((c->class & PFNW_CLASS_ERROR) && c->ret < 0) {
		__u64 err = -c->ret;

		bump(&errors, PFNW_ERRORS_INDEX(c->hook, err));
	}
	if (wants_record(c->hook, c->class) && pid_wanted(c))
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
	if (!bad_map && !is_pfn_mapping(c.vm_flags))
		return 0;
	/* pfnwatch's only pfn mappings are its ring buffers, which
	 * vm_insert_page() makes VM_MIXEDMAP (remap_vmalloc_range): a
	 * VM_PFNMAP lookup is never its own, and the fork of a device
	 * mapping skips the helper call (about 10 % of the program's cost). */
	if ((bad_map || (c.vm_flags & VM_MIXEDMAP)) && is_self())
		return 0;
	c.vma = vma;
	c.hook = hook;
	c.addr = addr;
	c.entry = entry;
	c.level = level;
	c.size = entry_size(level);
	c.pfn = entry_pfn(entry, level);
	c.event_flags = PFNW_EVENT_PFN_KNOWN;
	if (zero_pfn && c.pfn == zero_pfn)
		c.event_flags |= PFNW_EVENT_ZERO_PAGE;
	c.ret = page != 0;
	c.class = vma_class(&c);
	if (entry & geometry.special)
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
	if (!is_pfn_mapping(c.vm_flags))
		return 0;
	if (is_self())
		return 0;
	c.vma = vma;
	c.hook = PFNW_HOOK_FOLIO_WALK_START;
	c.addr = addr;
	c.size = geometry.pte_size;
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
		if (zero_pfn && c.pfn == zero_pfn)
			c.event_flags |= PFNW_EVENT_ZERO_PAGE;
	}
	c.class = vma_class(&c);
	if (!folio)
		c.class |= PFNW_CLASS_NO_PAGE;
	else {
		if (c.entry & geometry.special)
			c.class |= PFNW_CLASS_SPECIAL;
		if (mapping_is_anon(BPF_CORE_READ(folio, mapping)))
			c.class |= PFNW_CLASS_ANON;
	}
	finish(ctx, &c);
	return 0;
}

/*
 * pfn lookups by address (KVM, vfio type1, /proc/PID/mem and ptrace
 * through generic_access_phys, x86 PAT): follow_pfnmap_start() on 6.12+,
 * follow_phys() on 6.1. On success they found a present pte; its special
 * bit and pfn say what the lookup handed out. No page is involved.
 */
static __always_inline int pfn_followed(void *ctx, __u16 hook, struct vm_area_struct *vma,
					__u64 addr, __u64 pfn, bool special, int ret)
{
	struct call c = {};

	c.vm_flags = vma_flags(vma);
	if (!is_pfn_mapping(c.vm_flags))
		return 0;
	if (is_self())
		return 0;
	c.vma = vma;
	c.hook = hook;
	c.addr = addr;
	c.size = geometry.pte_size;
	c.ret = ret;
	if (ret == 0) {
		c.pfn = pfn;
		c.event_flags = PFNW_EVENT_PFN_KNOWN;
	}
	c.class = vma_class(&c);
	if (ret != 0)
		c.class |= PFNW_CLASS_ERROR;
	else if (special)
		c.class |= PFNW_CLASS_SPECIAL;
	finish(ctx, &c);
	return 0;
}

SEC("fexit/follow_pfnmap_start")
int BPF_PROG(follow_pfnmap_start_exit, struct follow_pfnmap_args *args, int ret)
{
	return pfn_followed(ctx, PFNW_HOOK_FOLLOW_PFNMAP_START, args->vma, args->address,
			    args->pfn, args->special, ret);
}

SEC("fexit/follow_phys")
int BPF_PROG(follow_phys_exit, struct vm_area_struct *vma, unsigned long address,
	     unsigned int flags, unsigned long *prot, __u64 *phys, int ret)
{
	__u64 pa = 0, flags_of_pte = 0;

	if (ret == 0) {
		bpf_probe_read_kernel(&pa, sizeof(pa), phys);
		/* *prot is pte_pgprot(pte): x86's pte_flags(), special bit included. */
		bpf_probe_read_kernel(&flags_of_pte, sizeof(flags_of_pte), prot);
	}
	return pfn_followed(ctx, PFNW_HOOK_FOLLOW_PHYS, vma, address, pa >> geometry.page_shift,
			    (flags_of_pte & geometry.special) != 0, ret);
}

/*
 * Mapping hooks: a driver puts pfns (or pages) into a vma. `any_vma`: the
 * remaps count every call (a refused partial COW remap never became a pfn
 * mapping); the inserts, which DAX and others make into ordinary file
 * mappings, count only calls on pfn mappings, like the lookups.
 */
static __always_inline int mapped(void *ctx, __u16 hook, struct vm_area_struct *vma, __u64 addr,
				  __u64 pfn, bool pfn_known, __u64 size, __u32 level, __s64 ret,
				  bool failed, bool any_vma)
{
	struct call c = {};

	c.vm_flags = vma_flags(vma);
	if (!any_vma && !is_pfn_mapping(c.vm_flags))
		return 0;
	if (is_self())
		return 0;
	c.vma = vma;
	c.hook = hook;
	c.addr = addr;
	c.pfn = pfn;
	c.size = size;
	c.level = level;
	c.ret = ret;
	if (pfn_known)
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
	/* Rule 3: a remap of a COW mapping must cover the whole vma; the
	 * kernel rounds the size up to a page before it compares. */
	if (pfnw_hook_family(hook) == PFNW_FAMILY_REMAP &&
	    (addr != vma->vm_start || addr + PAGE_ALIGN(size) != vma->vm_end))
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
	return mapped(ctx, PFNW_HOOK_REMAP_PFN_RANGE, vma, addr, pfn, true, size, PFNW_LEVEL_PTE,
		      ret, ret < 0, true);
}

SEC("fexit/remap_pfn_range_complete")
int BPF_PROG(remap_pfn_range_complete_exit, struct vm_area_struct *vma,
	     struct mmap_action *action, int ret)
{
	return mapped(ctx, PFNW_HOOK_REMAP_PFN_RANGE_COMPLETE, vma, action->remap.start,
		      action->remap.start_pfn, true, action->remap.size, PFNW_LEVEL_PTE, ret, ret < 0,
		      true);
}

/*
 * 7.x mmap_prepare: a converted driver describes its remap before the vma
 * exists, and remap_pfn_range_prepare() refuses a COW remap that does not
 * cover the whole range (-EINVAL) there, so that is where rule 3 is seen.
 * There is no vma yet: the record carries the range the vma would have had.
 * The kernel compares the raw size here (no PAGE_ALIGN), and so does this.
 */
SEC("fexit/remap_pfn_range_prepare")
int BPF_PROG(remap_pfn_range_prepare_exit, struct vm_area_desc *desc, int ret)
{
	struct call c = {};
	struct pfnwatch_event *e;
	__u64 start = desc->start, end = desc->end;
	__u64 addr = desc->action.remap.start, size = desc->action.remap.size;

	if (is_self())
		return 0;
	c.hook = PFNW_HOOK_REMAP_PFN_RANGE_PREPARE;
	/* On success prepare has added VM_IO|VM_PFNMAP|... to the flags. */
	c.vm_flags = desc->vma_flags.__vma_flags[0];
	if (c.vm_flags & VM_PFNMAP)
		c.class |= PFNW_CLASS_PFNMAP;
	if (c.vm_flags & VM_MIXEDMAP)
		c.class |= PFNW_CLASS_MIXEDMAP;
	if (is_cow(c.vm_flags))
		c.class |= PFNW_CLASS_COW;
	if (addr != start || addr + size != end)
		c.class |= PFNW_CLASS_PARTIAL;
	if (ret < 0)
		c.class |= PFNW_CLASS_ERROR;
	c.ret = ret;
	bump(&counts, PFNW_COUNTS_INDEX(c.hook, c.class));
	if (ret < 0)
		bump(&errors, PFNW_ERRORS_INDEX(c.hook, (__u64)-ret));
	if (!wants_record(c.hook, c.class) || !pid_wanted(&c))
		return 0;
	e = reserve(c.hook, c.class, false);
	if (!e)
		return 0;
	if (capture_stack)
		__builtin_memset(e, 0, sizeof(*e));
	else
		__builtin_memset(e, 0, __builtin_offsetof(struct pfnwatch_event, stack));
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->vm_flags = c.vm_flags;
	e->vm_start = start;
	e->vm_end = end;
	e->vm_pgoff = desc->pgoff;
	e->addr = addr;
	e->pfn = desc->action.remap.start_pfn;
	e->size = size;
	e->ret = ret;
	e->pid = (__u32)bpf_get_current_pid_tgid();
	e->tgid = bpf_get_current_pid_tgid() >> 32;
	e->hook = c.hook;
	e->class = c.class;
	e->flags = PFNW_EVENT_PFN_KNOWN;
	e->page_shift = geometry.page_shift;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	fill_file(e, desc->file);
	if (capture_stack) {
		long n = bpf_get_stack(ctx, e->stack, sizeof(e->stack), 0);

		if (n > 0)
			e->stack_bytes = n;
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * The pfn inserts BUG() on a COW VM_PFNMAP, and on a vma that is both
 * VM_PFNMAP and VM_MIXEDMAP, before they insert anything (mm/memory.c
 * vmf_insert_pfn_prot, mm/huge_memory.c vmf_insert_pfn_pmd/pud): their
 * fexit never runs then. At fentry the call is seen, counted and sent with
 * a wakeup, just before the kernel's BUG; every other call returns at once.
 */
static __always_inline int pfn_insert_entry(void *ctx, __u16 hook, struct vm_area_struct *vma,
					    __u64 addr, __u64 pfn, __u64 size, __u32 level)
{
	__u64 flags = vma_flags(vma);
	struct call c = {};

	if (!(flags & VM_PFNMAP) || !(is_cow(flags) || (flags & VM_MIXEDMAP)))
		return 0;
	if (is_self())
		return 0;
	c.vma = vma;
	c.vm_flags = flags;
	c.hook = hook;
	c.addr = addr;
	c.pfn = pfn;
	c.size = size;
	c.level = level;
	c.event_flags = PFNW_EVENT_PFN_KNOWN | PFNW_EVENT_AT_ENTRY;
	c.class = vma_class(&c);
	c.urgent = true;
	finish(ctx, &c);
	return 0;
}

SEC("fentry/vmf_insert_pfn_prot")
int BPF_PROG(vmf_insert_pfn_prot_entry, struct vm_area_struct *vma, unsigned long addr,
	     unsigned long pfn)
{
	return pfn_insert_entry(ctx, PFNW_HOOK_VMF_INSERT_PFN_PROT, vma, addr, pfn, geometry.pte_size,
				PFNW_LEVEL_PTE);
}

SEC("fexit/vmf_insert_pfn_prot")
int BPF_PROG(vmf_insert_pfn_prot_exit, struct vm_area_struct *vma, unsigned long addr,
	     unsigned long pfn, __u64 pgprot, unsigned int ret)
{
	return mapped(ctx, PFNW_HOOK_VMF_INSERT_PFN_PROT, vma, addr, pfn, true, geometry.pte_size,
		      PFNW_LEVEL_PTE, ret, ret & VM_FAULT_ERROR, false);
}

SEC("fexit/vmf_insert_mixed")
int BPF_PROG(vmf_insert_mixed_exit, struct vm_area_struct *vma, unsigned long addr, __u64 pfn,
	     unsigned int ret)
{
	return mapped(ctx, PFNW_HOOK_VMF_INSERT_MIXED, vma, addr, pfn & ~PFN_T_FLAGS_MASK, true,
		      geometry.pte_size, PFNW_LEVEL_PTE, ret, ret & VM_FAULT_ERROR, false);
}

/*
 * Huge fault-time inserts: one special pmd or pud maps 2 MiB or 1 GiB of
 * pfns, as vfio-pci does for BARs. 6.12+ name them vmf_insert_pfn_pmd/pud
 * (vmf, pfn, write); 6.1 has only vmf_insert_pfn_pmd_prot/pud_prot (vmf,
 * pfn, pgprot, write), which the same programs attach to: they read the
 * first two arguments and take the return value with bpf_get_func_ret().
 * The pfn arrives as a pfn_t until 6.16 (flags in the top bits) and as a
 * plain pfn after: the mask serves both.
 */
static __always_inline int huge_insert(void *ctx, __u16 hook, struct vm_fault *vmf, __u64 pfn,
				       __u32 level, bool at_entry)
{
	/* Direct reads keep vma a pointer the verifier lets the helpers below
	 * dereference (BPF_CORE_READ would hand back a plain number). */
	struct vm_area_struct *vma = vmf->vma;
	__u64 size = entry_size(level);
	__u64 addr = vmf->address & ~(size - 1);
	__u64 ret = 0;

	pfn &= ~PFN_T_FLAGS_MASK;
	if (at_entry)
		return pfn_insert_entry(ctx, hook, vma, addr, pfn, size, level);
	bpf_get_func_ret(ctx, &ret);
	return mapped(ctx, hook, vma, addr, pfn, true, size, level, (__s64)(__u32)ret,
		      ret & VM_FAULT_ERROR, false);
}

SEC("fentry/vmf_insert_pfn_pmd")
int BPF_PROG(vmf_insert_pfn_pmd_entry, struct vm_fault *vmf, __u64 pfn)
{
	return huge_insert(ctx, PFNW_HOOK_VMF_INSERT_PFN_PMD, vmf, pfn, PFNW_LEVEL_PMD, true);
}

SEC("fexit/vmf_insert_pfn_pmd")
int BPF_PROG(vmf_insert_pfn_pmd_exit, struct vm_fault *vmf, __u64 pfn)
{
	return huge_insert(ctx, PFNW_HOOK_VMF_INSERT_PFN_PMD, vmf, pfn, PFNW_LEVEL_PMD, false);
}

SEC("fentry/vmf_insert_pfn_pud")
int BPF_PROG(vmf_insert_pfn_pud_entry, struct vm_fault *vmf, __u64 pfn)
{
	return huge_insert(ctx, PFNW_HOOK_VMF_INSERT_PFN_PUD, vmf, pfn, PFNW_LEVEL_PUD, true);
}

SEC("fexit/vmf_insert_pfn_pud")
int BPF_PROG(vmf_insert_pfn_pud_exit, struct vm_fault *vmf, __u64 pfn)
{
	return huge_insert(ctx, PFNW_HOOK_VMF_INSERT_PFN_PUD, vmf, pfn, PFNW_LEVEL_PUD, false);
}

/*
 * Page inserts: refcounted pages, not pfns, and vm_insert_page() sets
 * VM_MIXEDMAP itself (io_uring rings, BPF ring buffers, remap_vmalloc_range,
 * 7.x's vvar and DAX). Counted on pfn mappings; the pfn is not read (a
 * struct page to pfn needs the kernel's vmemmap base).
 */
/*
 * apply_to_page_range(mm, addr, size, fn, data) writes ptes through a
 * callback of the caller's: i915 maps its GTT and lmem faults this way
 * (i915_mm.c remap_io_mapping/remap_io_sg: special ptes written with
 * set_pte_at), and so do Xen's foreign-memory maps. It takes an mm, not a
 * vma: the vma is looked up with bpf_find_vma, which takes the mmap lock
 * with a trylock, so it is found in fault paths and not under the mmap write
 * lock (Xen's gntdev mmap), where the call is not counted.
 */
struct apply_call {
	void *ctx;
	__u64 addr;
	__u64 size;
	__s64 ret;
};

static long apply_vma_found(struct task_struct *task, struct vm_area_struct *vma,
			    struct apply_call *a)
{
	mapped(a->ctx, PFNW_HOOK_APPLY_TO_PAGE_RANGE, vma, a->addr, 0, false, a->size,
	       PFNW_LEVEL_PTE, a->ret, a->ret < 0, false);
	return 0;
}

SEC("fexit/apply_to_page_range")
int BPF_PROG(apply_to_page_range_exit, struct mm_struct *mm, unsigned long addr,
	     unsigned long size, void *fn, void *data, int ret)
{
	struct apply_call a = { .ctx = ctx, .addr = addr, .size = size, .ret = ret };
	struct task_struct *task;

	/* Kernel page tables (vmap_pfn, Xen grant tables, BPF arenas) live
	 * above the user half: no user mapping. */
	if ((long)addr < 0)
		return 0;
	/* Another task's mm (SGX's ksgxd ageing enclave pages) is none of the
	 * caller's vmas. */
	task = bpf_get_current_task_btf();
	if (task->mm != mm)
		return 0;
	bpf_find_vma(task, addr, apply_vma_found, &a, 0);
	return 0;
}

SEC("fexit/vm_insert_page")
int BPF_PROG(vm_insert_page_exit, struct vm_area_struct *vma, unsigned long addr,
	     struct page *page, int ret)
{
	return mapped(ctx, PFNW_HOOK_VM_INSERT_PAGE, vma, addr, 0, false, geometry.pte_size,
		      PFNW_LEVEL_PTE, ret, ret < 0, false);
}

SEC("fexit/vm_insert_pages")
int BPF_PROG(vm_insert_pages_exit, struct vm_area_struct *vma, unsigned long addr,
	     struct page **pages, unsigned long *num, int ret)
{
	__u64 left = 0;

	/* *num is what was not inserted; the size covers the whole request. */
	bpf_probe_read_kernel(&left, sizeof(left), num);
	return mapped(ctx, PFNW_HOOK_VM_INSERT_PAGES, vma, addr, 0, false, geometry.pte_size,
		      PFNW_LEVEL_PTE, ret, ret < 0, false);
}

SEC("fexit/vmf_insert_page_mkwrite")
int BPF_PROG(vmf_insert_page_mkwrite_exit, struct vm_fault *vmf, struct page *page, bool write,
	     unsigned int ret)
{
	return mapped(ctx, PFNW_HOOK_VMF_INSERT_PAGE_MKWRITE, vmf->vma,
		      vmf->address & ~(geometry.pte_size - 1), 0, false, geometry.pte_size,
		      PFNW_LEVEL_PTE, ret, ret & VM_FAULT_ERROR, false);
}

SEC("fexit/vmf_insert_folio_pmd")
int BPF_PROG(vmf_insert_folio_pmd_exit, struct vm_fault *vmf, struct folio *folio, bool write,
	     unsigned int ret)
{
	return mapped(ctx, PFNW_HOOK_VMF_INSERT_FOLIO_PMD, vmf->vma,
		      vmf->address & ~(geometry.pmd_size - 1), 0, false, geometry.pmd_size,
		      PFNW_LEVEL_PMD, ret, ret & VM_FAULT_ERROR, false);
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

/*
 * The inventory. perf_event_mmap() runs for every new vma once its driver's
 * mmap handler has set its flags (mm/mmap.c mmap_region on 6.1,
 * __mmap_region on 6.12 and 7.2), and again on mprotect; copy_page_range()
 * gives a forked child each pfn mapping of its parent; vm_area_free() is
 * the one place every vma goes (munmap, exit, error paths). Only pfn
 * mappings are tracked, and not the vDSO's (every process has them).
 */
static __always_inline bool is_special_mapping(struct vm_area_struct *vma)
{
	return special_mapping_vmops && !BPF_CORE_READ(vma, vm_file) &&
	       (__u64)BPF_CORE_READ(vma, vm_ops) == special_mapping_vmops;
}

/* Whether the vma's file is one of the safe subsystems'. */
static __always_inline bool is_safe_file(struct vm_area_struct *vma)
{
	struct file *file = BPF_CORE_READ(vma, vm_file);
	__u64 fop;

	if (!file)
		return false;
	fop = (__u64)BPF_CORE_READ(file, f_op);
	for (int i = 0; i < PFNW_SAFE_FOPS_SLOTS; i++) {
		if (safe_fops[i] && safe_fops[i] == fop)
			return true;
	}
	return false;
}

static __always_inline __u64 lookups_slot(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&lookups, &slot);

	return v ? *v : 0;
}

static __always_inline void watched_add(__s64 n)
{
	__u32 slot = PFNW_LOOKUPS_WATCHED;
	__u64 *watched = bpf_map_lookup_elem(&lookups, &slot), *ns;
	__u64 *attached;

	if (!watched)
		return;
	__sync_fetch_and_add(watched, n);
	slot = PFNW_LOOKUPS_ATTACHED;
	attached = bpf_map_lookup_elem(&lookups, &slot);
	if (n <= 0 || !attached || *attached)
		return;
	/* A full ring means a wake-up is waiting already. */
	ns = bpf_ringbuf_reserve(&lookup_wake, sizeof(*ns), 0);
	if (!ns)
		return;
	*ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(ns, BPF_RB_FORCE_WAKEUP);
}

/*
 * A tracked vma whose free went unseen: its count goes, and user space
 * hears it is gone (only its id and range are known). The kernel skips a
 * program's call while that program is running on the CPU already
 * (kernel/bpf/trampoline.c __bpf_prog_enter_recur); on a preemptible
 * kernel (7.x's PREEMPT_LAZY) a task preempted inside vm_area_free_entry
 * makes every other free on that CPU a miss. Found two ways: a new vma at
 * its address (the slab reuses a freed vma's at once), or two walks that
 * did not find it (sweep_gone).
 */
static __always_inline void forget_unseen(struct tracked *t)
{
	struct call c = {};

	if (t->watched)
		watched_add(-1);
	c.vm_flags = t->vm_flags;
	c.hook = PFNW_HOOK_VM_AREA_FREE;
	c.addr = t->start;
	c.size = t->end - t->start;
	c.vma_id = t->id;
	c.event_flags = PFNW_EVENT_FREE_UNSEEN;
	c.class = vma_class(&c);
	bump(&drops, PFNW_LOSS_FREE_UNSEEN);
	if (wants_record(c.hook, c.class))
		send(NULL, &c);
}

/* A new pfn mapping (or one announced again) of `task` (NULL: current). */
static __always_inline int vma_created(void *ctx, __u16 hook, struct vm_area_struct *vma,
				       __u64 flags, __u32 event_flags, struct task_struct *task)
{
	__u64 key = (__u64)vma;
	struct tracked now = {}, *known;
	struct call c = {};
	bool self;

	if (!is_pfn_mapping(flags) || is_special_mapping(vma))
		return 0;
	self = task ? BPF_CORE_READ(task, tgid) == self_tgid : is_self();
	if (self)
		return 0;
	now.mm = (__u64)BPF_CORE_READ(vma, vm_mm);
	now.start = BPF_CORE_READ(vma, vm_start);
	now.end = BPF_CORE_READ(vma, vm_end);
	now.seen = lookups_slot(PFNW_LOOKUPS_WALK);
	now.vm_flags = flags;
	/* mprotect announces the vma again, with a new range if it split it,
	 * and a walk finds it again: the same vma, so the range follows and
	 * nothing is reported. */
	known = bpf_map_lookup_elem(&inventory, &key);
	if (known && known->mm == now.mm) {
		known->start = now.start;
		known->end = now.end;
		known->seen = now.seen;
		known->vm_flags = flags;
		return 0;
	}
	/* A vma at a freed one's address whose free went unseen: that one
	 * is gone, said before the new one is. */
	if (known) {
		struct tracked old = *known;

		forget_unseen(&old);
	}
	now.watched = !is_safe_file(vma);
	now.id = __sync_fetch_and_add(&inventory_ids, 1) + 1;
	if (bpf_map_update_elem(&inventory, &key, &now, BPF_ANY) != 0) {
		bump(&drops, PFNW_LOSS_INVENTORY);
		/* Counted and never taken back: with a vma untracked, the
		 * lookups stay attached. */
		if (now.watched)
			watched_add(1);
		return 0;
	}
	if (now.watched)
		watched_add(1);
	c.vma = vma;
	c.vm_flags = flags;
	c.hook = hook;
	c.addr = BPF_CORE_READ(vma, vm_start);
	c.size = BPF_CORE_READ(vma, vm_end) - c.addr;
	c.vma_id = now.id;
	c.event_flags = event_flags;
	c.task = task;
	c.class = vma_class(&c);
	finish(ctx, &c);
	return 0;
}

SEC("fentry/perf_event_mmap")
int BPF_PROG(perf_event_mmap_entry, struct vm_area_struct *vma)
{
	return vma_created(ctx, PFNW_HOOK_PERF_EVENT_MMAP, vma, vma_flags(vma), 0, NULL);
}

SEC("fentry/copy_page_range")
int BPF_PROG(copy_page_range_entry, struct vm_area_struct *dst, struct vm_area_struct *src)
{
	/* The child's vma has the parent's flags and range already. */
	return vma_created(ctx, PFNW_HOOK_COPY_PAGE_RANGE, dst, vma_flags(dst), PFNW_EVENT_FORK,
			   NULL);
}

static __always_inline int vma_gone(void *ctx, struct vm_area_struct *vma)
{
	__u64 key = (__u64)vma;
	struct tracked *known;
	struct call c = {};

	c.vm_flags = vma_flags(vma);
	if (!is_pfn_mapping(c.vm_flags))
		return 0;
	known = bpf_map_lookup_elem(&inventory, &key);
	if (!known)
		return 0;
	c.vma_id = known->id;
	if (known->watched)
		watched_add(-1);
	bpf_map_delete_elem(&inventory, &key);
	c.vma = vma;
	c.hook = PFNW_HOOK_VM_AREA_FREE;
	c.addr = BPF_CORE_READ(vma, vm_start);
	c.size = BPF_CORE_READ(vma, vm_end) - c.addr;
	/* remove_vma() has fput() the file, but a task's last reference is
	 * released by task work (____fput, on return to user space or at
	 * exit_task_work, after exit_mm): the file is whole here, and names the
	 * device the mapping goes away from. */
	c.class = vma_class(&c);
	finish(ctx, &c);
	return 0;
}

SEC("fentry/vm_area_free")
int BPF_PROG(vm_area_free_entry, struct vm_area_struct *vma)
{
	return vma_gone(ctx, vma);
}

/* 6.12: exit_mmap frees a vma no one else can reach with __vm_area_free()
 * directly (mm/vma.c remove_vma(vma, unreachable)); vm_area_free() defers
 * to it through RCU, by which time the vma has left the inventory. */
SEC("fentry/__vm_area_free")
int BPF_PROG(__vm_area_free_entry, struct vm_area_struct *vma)
{
	return vma_gone(ctx, vma);
}

/*
 * A tracked vma two walks in a row did not find: its free went unseen.
 * Two walks, not one: a task between exit_mm() and exit_files() hides its
 * threads' vmas from one walk (task_iter.c skips threads sharing the
 * leader's files).
 */
static long sweep_gone(void *map, __u64 *key, struct tracked *t, __u64 *walk)
{
	if (t->seen + 1 >= *walk)
		return 0;
	forget_unseen(t);
	/* The callback may delete the element it was given (hashtab.c
	 * bpf_for_each_hash_elem walks each bucket with the _safe iterator). */
	bpf_map_delete_elem(map, key);
	return 0;
}

/* The walk visits the tasks of the reader's pid namespace
 * (task_iter.c, task_active_pid_ns(current)): every task only from the
 * initial one. Run in a container without the host's pids, pfnwatch walks
 * a part and must not call the rest gone. */
static __always_inline bool walked_every_task(void)
{
	struct task_struct *me = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(me, thread_pid, level) == 0;
}

/*
 * Every task's vmas, walked by user space at start (the pfn mappings made
 * before pfnwatch, which no hook saw) and before it detaches the lookups
 * (a vma split off a tracked one by a partial munmap or mprotect is a pfn
 * mapping no hook announced). Each one the inventory lacks gets in, with a
 * record flagged EXISTING.
 */
SEC("iter/task_vma")
int existing_vmas(struct bpf_iter__task_vma *ctx)
{
	struct vm_area_struct *vma = ctx->vma;
	struct task_struct *task = ctx->task;

	if (!vma || !task) {
		/* The end of the walk (bpf_seq_read calls the program once more
		 * with neither, and only when every task was walked). */
		if (!task && walked_every_task()) {
			__u64 walk = lookups_slot(PFNW_LOOKUPS_WALK);

			bpf_for_each_map_elem(&inventory, sweep_gone, &walk, 0);
		}
		return 0;
	}
	return vma_created(ctx, PFNW_HOOK_PERF_EVENT_MMAP, vma, vma_flags(vma),
			   PFNW_EVENT_EXISTING, task);
}
