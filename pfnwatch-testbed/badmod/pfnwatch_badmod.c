// SPDX-License-Identifier: GPL-2.0
/*
 * pfnwatch_badmod: a test module that plays drivers which break the kernel's
 * VM_PFNMAP / VM_MIXEDMAP rules, so pfnwatch's VM tests can make each
 * misbehaviour happen on a real Debian kernel (6.1, 6.12, 7.2). One misc
 * device per misbehaviour; each mmap handler is the whole "driver".
 *
 * It maps a device BAR that has no struct page (qemu -vga std: PCI 00:02.0
 * resource0), given as bar_pfn/bar_pages. Everything it does is chosen so the
 * guest survives: no path here reaches a BUG_ON, and every page it hands out
 * is freed by the page tables' own refcounting. It is for test VMs only.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/version.h>

/* pfn_t went away in 6.17 (Alistair Popple's "mm: remove pfn_t" series):
 * vmf_insert_mixed() takes a plain pfn from then on. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 17, 0)
#include <linux/pfn_t.h>
#define BADMOD_HAS_PFN_T 1
#endif

static unsigned long bar_pfn;
module_param(bar_pfn, ulong, 0444);
MODULE_PARM_DESC(bar_pfn, "first pfn of a device BAR without struct pages (required)");

static unsigned long bar_pages = 16;
module_param(bar_pages, ulong, 0444);
MODULE_PARM_DESC(bar_pages, "pages of that BAR the devices may map (default 16)");

/* Optional: a second BAR of at least 1 GiB (qemu's ivshmem BAR 2), for the
 * pud-sized pfn map (/dev/pfnw-huge-pud). */
static unsigned long pud_bar_pfn;
module_param(pud_bar_pfn, ulong, 0444);
MODULE_PARM_DESC(pud_bar_pfn, "first pfn of a 1 GiB-aligned BAR without struct pages (optional)");

static unsigned long pud_bar_pages;
module_param(pud_bar_pages, ulong, 0444);
MODULE_PARM_DESC(pud_bar_pages, "pages of that BAR");

/* The misc devices registered, space-separated, for the guest to read back
 * from /sys/module/pfnwatch_badmod/parameters/devices. */
static char devices[256];
module_param_string(devices, devices, sizeof(devices), 0444);
MODULE_PARM_DESC(devices, "read-only: the /dev nodes this module created");

/* Bounds the normal-pfnmap allocation: the tests map a few pages. */
#define NORMAL_PFNMAP_MAX_PAGES 256
/* Written at the start of each normal-pfnmap page ("pfnw" + page index), so a
 * test can tell it reads the driver's page and not some other memory. */
#define NORMAL_PFNMAP_MARK 0x70666e7700000000ULL

/* vm_flags became write-protected behind vm_flags_*() in 6.3 (per-VMA locks). */
static void badmod_flags_mod(struct vm_area_struct *vma, vm_flags_t set,
			     vm_flags_t clear)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_mod(vma, set, clear);
#else
	vma->vm_flags = (vma->vm_flags | set) & ~clear;
#endif
}

static vm_fault_t badmod_insert_mixed(struct vm_area_struct *vma,
				      unsigned long addr, unsigned long pfn)
{
#ifdef BADMOD_HAS_PFN_T
	/* PFN_DEV without PFN_MAP: no memmap behind it and not devmap, so
	 * insert_pfn() writes a plain special pte. */
	return vmf_insert_mixed(vma, addr, __pfn_to_pfn_t(pfn, PFN_DEV));
#else
	return vmf_insert_mixed(vma, addr, pfn);
#endif
}

/* The vma's pages must lie inside the BAR at base (pages long): first
 * device pfn in *pfn. */
static int range_in(unsigned long base, unsigned long pages,
		    struct vm_area_struct *vma, unsigned long *pfn)
{
	if (vma->vm_pgoff >= pages || vma_pages(vma) > pages - vma->vm_pgoff)
		return -EINVAL;
	*pfn = base + vma->vm_pgoff;
	return 0;
}

static int bar_range(struct vm_area_struct *vma, unsigned long *pfn)
{
	return range_in(bar_pfn, bar_pages, vma, pfn);
}

/* For vmas populated at mmap time: a fault there (a child after fork, where
 * the ptes were not copied) has nothing to map. */
static vm_fault_t sigbus_fault(struct vm_fault *vmf)
{
	return VM_FAULT_SIGBUS;
}

static const struct vm_operations_struct sigbus_ops = {
	.fault = sigbus_fault,
};

/*
 * /dev/pfnw-insert-mixed: a fault-time inserting driver that allows COW
 * (MAP_PRIVATE) mappings. It must be VM_MIXEDMAP: vmf_insert_pfn*() BUG()s on
 * a COW VM_PFNMAP vma. Each fault maps bar_pfn + file page offset.
 */
/* Keeps the caller's frame on the kernel stack: a tail call would replace it
 * with the callee's, and pfnwatch's call path would not name this driver.
 * (Real drivers do tail-call; their alerts then name the caller above.) */
#define BADMOD_NO_TAIL_CALL() asm volatile("" ::: "memory")

static vm_fault_t insert_mixed_fault(struct vm_fault *vmf)
{
	vm_fault_t ret;

	if (vmf->pgoff >= bar_pages)
		return VM_FAULT_SIGBUS;
	ret = badmod_insert_mixed(vmf->vma, vmf->address, bar_pfn + vmf->pgoff);
	BADMOD_NO_TAIL_CALL();
	return ret;
}

static const struct vm_operations_struct insert_mixed_ops = {
	.fault = insert_mixed_fault,
};

static int insert_mixed_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long pfn;
	int err = bar_range(vma, &pfn);

	if (err)
		return err;
	badmod_flags_mod(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP, 0);
	vma->vm_ops = &insert_mixed_ops;
	return 0;
}

/*
 * /dev/pfnw-zero-cow-pfnmap (MAP_PRIVATE only): a fault-time driver that
 * makes a COW vma VM_PFNMAP and fills it with vmf_insert_mixed(). Into a
 * VM_PFNMAP, vm_mixed_ok() lets only the zero pfn through (and, before
 * 6.17, special or devmap pfn_ts), so each fault maps the shared zero page.
 * Nothing breaks on x86 (the pte is special), but vm_pgoff now says nothing
 * about the vma's pfns, which is all an architecture without pte_special
 * has to tell them from COW copies; vmf_insert_pfn() in its place would
 * BUG(). Read-only use: a write would COW the zero page.
 */
static vm_fault_t zero_cow_pfnmap_fault(struct vm_fault *vmf)
{
	vm_fault_t ret;

	ret = badmod_insert_mixed(vmf->vma, vmf->address,
				  page_to_pfn(ZERO_PAGE(vmf->address)));
	BADMOD_NO_TAIL_CALL();
	return ret;
}

static const struct vm_operations_struct zero_cow_pfnmap_ops = {
	.fault = zero_cow_pfnmap_fault,
};

static int zero_cow_pfnmap_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (!is_cow_mapping(vma->vm_flags))
		return -EINVAL;
	badmod_flags_mod(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP, 0);
	vma->vm_ops = &zero_cow_pfnmap_ops;
	return 0;
}

/*
 * /dev/pfnw-apply-range (MAP_SHARED): a correct driver that writes its ptes
 * the way i915 maps GTT and lmem faults (i915_mm.c remap_io_mapping):
 * VM_PFNMAP set at mmap, and at each fault apply_to_page_range() on the
 * user mm with a callback that sets a special pte of the BAR's pfn. The
 * page-table lock is held around the callback (apply_to_pte_range), and
 * the ptes are special, so zap and fork see no page, as with
 * remap_pfn_range().
 */
struct apply_pfn {
	struct mm_struct *mm;
	unsigned long pfn;
	pgprot_t prot;
};

static int apply_special_pte(pte_t *pte, unsigned long addr, void *data)
{
	struct apply_pfn *a = data;

	set_pte_at(a->mm, addr, pte, pte_mkspecial(pfn_pte(a->pfn, a->prot)));
	return 0;
}

static vm_fault_t apply_range_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct apply_pfn a = {
		.mm = vma->vm_mm,
		.pfn = bar_pfn + vmf->pgoff,
		.prot = vma->vm_page_prot,
	};
	int err;

	if (vmf->pgoff >= bar_pages)
		return VM_FAULT_SIGBUS;
	err = apply_to_page_range(vma->vm_mm, vmf->address, PAGE_SIZE, apply_special_pte, &a);
	BADMOD_NO_TAIL_CALL();
	return err ? VM_FAULT_SIGBUS : VM_FAULT_NOPAGE;
}

static const struct vm_operations_struct apply_range_ops = {
	.fault = apply_range_fault,
};

static int apply_range_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long pfn;
	int err = bar_range(vma, &pfn);

	if (err)
		return err;
	if (is_cow_mapping(vma->vm_flags))
		return -EINVAL;
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	badmod_flags_mod(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP, 0);
	vma->vm_ops = &apply_range_ops;
	return 0;
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
/*
 * /dev/pfnw-insert-page (7.x, MAP_PRIVATE only): a fault-time driver that
 * fills a VM_MIXEDMAP with vmf_insert_page_mkwrite(), as fs/dax.c does for
 * holes: the shared zero page, which insert_page() maps with a special pte
 * and takes no reference on, and which vm_mixed_zeropage_allowed() lets
 * into a COW mapping. Read-only use: a write would COW the zero page.
 */
static vm_fault_t insert_page_fault(struct vm_fault *vmf)
{
	vm_fault_t ret;

	ret = vmf_insert_page_mkwrite(vmf, ZERO_PAGE(vmf->address), false);
	BADMOD_NO_TAIL_CALL();
	return ret;
}

static const struct vm_operations_struct insert_page_ops = {
	.fault = insert_page_fault,
};

static int insert_page_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (!is_cow_mapping(vma->vm_flags))
		return -EINVAL;
	badmod_flags_mod(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP, 0);
	vma->vm_ops = &insert_page_ops;
	return 0;
}
#define BADMOD_HAS_INSERT_PAGE_MKWRITE 1
#endif

/*
 * /dev/pfnw-partial-remap: remaps all but the last page. On a COW mapping the
 * kernel refuses (-EINVAL, before touching flags or ptes) and so does mmap.
 * On a shared mapping it is legal; the last page then SIGBUSes.
 */
static int partial_remap_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long pfn, size = vma->vm_end - vma->vm_start;
	int err = bar_range(vma, &pfn);

	if (err)
		return err;
	/* remap_pfn_range() BUG()s on an empty range. */
	if (size < 2 * PAGE_SIZE)
		return -EINVAL;
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	vma->vm_ops = &sigbus_ops;
	err = remap_pfn_range(vma, vma->vm_start, pfn, size - PAGE_SIZE,
			      vma->vm_page_prot);
	BADMOD_NO_TAIL_CALL();
	return err;
}

/*
 * /dev/pfnw-normal-pfnmap (MAP_SHARED only): real pages inserted with
 * vm_insert_page() (normal, refcounted, not special ptes), then the vma is
 * relabelled VM_PFNMAP. vm_normal_page() on those ptes returns a page in a
 * non-COW PFNMAP (rule 1 broken).
 *
 * Safe because zap and fork treat the ptes exactly as in the VM_MIXEDMAP
 * mapping they were inserted into (vm_normal_page() finds the page, the
 * rmap and refcount are dropped or duplicated); the VM_PFNMAP-only paths
 * are PAT's untrack_pfn()/track_pfn_copy() (6.1, 6.12), which act only on
 * VM_PAT, and 7.2's pfnmap_track_ctx, which only remap_pfn_range() sets.
 * Neither is set here.
 */
static int normal_pfnmap_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long addr, index = 0;
	int err;

	if (is_cow_mapping(vma->vm_flags) ||
	    vma_pages(vma) > NORMAL_PFNMAP_MAX_PAGES)
		return -EINVAL;
	/* Set up front: vm_insert_page() would set it itself, but 6.1 asserts
	 * with BUG_ON(mmap_read_trylock()) while doing so. */
	badmod_flags_mod(vma, VM_MIXEDMAP, 0);
	for (addr = vma->vm_start; addr < vma->vm_end; addr += PAGE_SIZE) {
		struct page *page = alloc_page(GFP_KERNEL | __GFP_ZERO);

		if (!page)
			return -ENOMEM;
		*(u64 *)page_address(page) = NORMAL_PFNMAP_MARK | index++;
		err = vm_insert_page(vma, addr, page);
		/* The pte took its own reference: from here the page belongs to
		 * the page tables and is freed when the last pte mapping it is
		 * zapped (munmap, exit, or mmap's own error path). */
		put_page(page);
		if (err)
			return err;
	}
	badmod_flags_mod(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP,
			 VM_MIXEDMAP);
	vma->vm_ops = &sigbus_ops;
	return 0;
}

/*
 * /dev/pfnw-pgoff (MAP_PRIVATE only, at least 2 pages): a COW VM_PFNMAP vma
 * whose vm_pgoff is not its first pfn (it is first pfn + 1), so the device's
 * special ptes break pfn == vm_pgoff + page index, the rule that tells them
 * from COW copies on architectures without pte_special.
 *
 * Not the obvious way (a full remap_pfn_range(), which sets vm_pgoff to the
 * first pfn, then vm_pgoff += 1): a full remap makes PAT track the range
 * (VM_PAT on 6.1/6.12), and once page 0 has been COWed, get_pat_info() finds
 * the range from vm_pgoff. Measured on 6.1 and 6.12: munmap then frees the
 * wrong range ("x86/PAT: freeing invalid memtype") and the real reservation
 * leaks. So the vma is mapped with two partial remaps while VM_MAYWRITE is
 * briefly cleared (a COW vma refuses partial remaps): partial remaps only
 * look up the cache mode, so there is no VM_PAT and no 7.2 pfnmap_track_ctx,
 * nothing to untrack, and fork and munmap are safe whatever page is COWed.
 */
static int pgoff_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long pfn, start = vma->vm_start;
	int err = bar_range(vma, &pfn);

	if (err)
		return err;
	if (!is_cow_mapping(vma->vm_flags) || vma_pages(vma) < 2)
		return -EINVAL;
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	vma->vm_ops = &sigbus_ops;
	badmod_flags_mod(vma, 0, VM_MAYWRITE);
	err = remap_pfn_range(vma, start, pfn, PAGE_SIZE, vma->vm_page_prot);
	if (!err)
		err = remap_pfn_range(vma, start + PAGE_SIZE, pfn + 1,
				      vma->vm_end - start - PAGE_SIZE,
				      vma->vm_page_prot);
	badmod_flags_mod(vma, VM_MAYWRITE, 0);
	if (err)
		return err;
	vma->vm_pgoff = pfn + 1;
	return 0;
}

/*
 * /dev/pfnw-bad-page-map (MAP_SHARED only): special ptes in a vma that is
 * neither VM_PFNMAP nor VM_MIXEDMAP. They are inserted with vmf_insert_mixed()
 * while the vma is VM_MIXEDMAP, then VM_MIXEDMAP is cleared. Every later
 * vm_normal_page() on them (munmap, exit) finds a special pte it cannot
 * explain and reports it through print_bad_pte() (6.1, 6.12) or
 * print_bad_page_map() (7.2): "BUG: Bad page map in process ...", then
 * returns NULL, so the pte is just cleared. No struct page is touched.
 *
 * VM_IO keeps GUP, NUMA balancing and mlock away; a shared vma without
 * anon_vma is not copied at fork, so the child's copy is empty (SIGBUS).
 */
static int bad_page_map_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long pfn, addr;
	int err = bar_range(vma, &pfn);

	if (err)
		return err;
	if (is_cow_mapping(vma->vm_flags))
		return -EINVAL;
	badmod_flags_mod(vma, VM_MIXEDMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP,
			 0);
	vma->vm_ops = &sigbus_ops;
	for (addr = vma->vm_start; addr < vma->vm_end; addr += PAGE_SIZE) {
		vm_fault_t ret = badmod_insert_mixed(vma, addr, pfn++);

		if (ret != VM_FAULT_NOPAGE)
			return ret == VM_FAULT_OOM ? -ENOMEM : -EFAULT;
	}
	badmod_flags_mod(vma, 0, VM_MIXEDMAP);
	return 0;
}

#ifdef CONFIG_ARCH_SUPPORTS_PMD_PFNMAP
/*
 * /dev/pfnw-huge-pfnmap and /dev/pfnw-huge-pud (MAP_SHARED only): a driver
 * that does it right, the way vfio-pci maps BARs since 6.12: a VM_PFNMAP
 * whose faults map 2 MiB (or 1 GiB) of the BAR at once with one special
 * pmd (or pud) from ->huge_fault, single pages where nothing bigger fits.
 * vm_pgoff is set to the first pfn, as PCI sysfs does. They break no rule:
 * they are there so a test can make the kernel insert and look up huge
 * pfn-map entries (vmf_insert_pfn_pmd/pud, vm_normal_page_pmd/pud,
 * folio_walk_start at those levels) and see pfnwatch classify them and
 * stay quiet.
 *
 * x86-64 has pmd and pud pfn maps from 6.12 (ARCH_SUPPORTS_{PMD,PUD}_PFNMAP);
 * 6.1 lacks their special bits, so the devices do not exist there.
 */
static vm_fault_t huge_pfnmap_huge_fault(struct vm_fault *vmf,
					 unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long base = vmf->address & ~((PAGE_SIZE << order) - 1);
	unsigned long pfn = vma->vm_pgoff + ((base - vma->vm_start) >> PAGE_SHIFT);
	vm_fault_t ret;

	if (base < vma->vm_start || base + (PAGE_SIZE << order) > vma->vm_end ||
	    (pfn & ((1UL << order) - 1)))
		return VM_FAULT_FALLBACK;
	switch (order) {
	case 0:
		ret = vmf_insert_pfn(vma, base, pfn);
		break;
	case PMD_ORDER:
#ifdef BADMOD_HAS_PFN_T
		ret = vmf_insert_pfn_pmd(vmf, __pfn_to_pfn_t(pfn, PFN_DEV), false);
#else
		ret = vmf_insert_pfn_pmd(vmf, pfn, false);
#endif
		break;
#ifdef CONFIG_ARCH_SUPPORTS_PUD_PFNMAP
	case PUD_ORDER:
#ifdef BADMOD_HAS_PFN_T
		ret = vmf_insert_pfn_pud(vmf, __pfn_to_pfn_t(pfn, PFN_DEV), false);
#else
		ret = vmf_insert_pfn_pud(vmf, pfn, false);
#endif
		break;
#endif
	default:
		return VM_FAULT_FALLBACK;
	}
	BADMOD_NO_TAIL_CALL();
	return ret;
}

static vm_fault_t huge_pfnmap_fault(struct vm_fault *vmf)
{
	return huge_pfnmap_huge_fault(vmf, 0);
}

static const struct vm_operations_struct huge_pfnmap_ops = {
	.fault = huge_pfnmap_fault,
	.huge_fault = huge_pfnmap_huge_fault,
};

static int huge_mmap(struct vm_area_struct *vma, unsigned long base,
		     unsigned long pages)
{
	unsigned long pfn;
	int err = range_in(base, pages, vma, &pfn);

	if (err)
		return err;
	/* vmf_insert_pfn*() BUG() on a COW VM_PFNMAP. */
	if (is_cow_mapping(vma->vm_flags))
		return -EINVAL;
	badmod_flags_mod(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP,
			 0);
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	vma->vm_pgoff = pfn;
	vma->vm_ops = &huge_pfnmap_ops;
	return 0;
}

static int huge_pfnmap_mmap(struct file *file, struct vm_area_struct *vma)
{
	return huge_mmap(vma, bar_pfn, bar_pages);
}

/* Mapped at a 1 GiB boundary by the caller (MAP_FIXED): the kernel's
 * helpers align file mappings to pmds only. */
static int huge_pud_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (!pud_bar_pfn)
		return -ENODEV;
	return huge_mmap(vma, pud_bar_pfn, pud_bar_pages);
}
#endif /* CONFIG_ARCH_SUPPORTS_PMD_PFNMAP */

#define BADMOD_FOPS(fn) \
	{ .owner = THIS_MODULE, .mmap = fn }

static const struct file_operations badmod_fops[] = {
	BADMOD_FOPS(insert_mixed_mmap),
	BADMOD_FOPS(partial_remap_mmap),
	BADMOD_FOPS(normal_pfnmap_mmap),
	BADMOD_FOPS(pgoff_mmap),
	BADMOD_FOPS(bad_page_map_mmap),
	BADMOD_FOPS(zero_cow_pfnmap_mmap),
	BADMOD_FOPS(apply_range_mmap),
#ifdef BADMOD_HAS_INSERT_PAGE_MKWRITE
	BADMOD_FOPS(insert_page_mmap),
#endif
#ifdef CONFIG_ARCH_SUPPORTS_PMD_PFNMAP
	/* Pmd-aligned addresses, so the faults can map whole pmds. */
	{ .owner = THIS_MODULE, .mmap = huge_pfnmap_mmap,
	  .get_unmapped_area = thp_get_unmapped_area },
	BADMOD_FOPS(huge_pud_mmap),
#endif
};

static struct miscdevice badmod_devs[] = {
	{ .name = "pfnw-insert-mixed", .fops = &badmod_fops[0] },
	{ .name = "pfnw-partial-remap", .fops = &badmod_fops[1] },
	{ .name = "pfnw-normal-pfnmap", .fops = &badmod_fops[2] },
	{ .name = "pfnw-pgoff", .fops = &badmod_fops[3] },
	{ .name = "pfnw-bad-page-map", .fops = &badmod_fops[4] },
	{ .name = "pfnw-zero-cow-pfnmap", .fops = &badmod_fops[5] },
	{ .name = "pfnw-apply-range", .fops = &badmod_fops[6] },
#ifdef BADMOD_HAS_INSERT_PAGE_MKWRITE
	{ .name = "pfnw-insert-page", .fops = &badmod_fops[7] },
#define BADMOD_HUGE_FOPS 8
#else
#define BADMOD_HUGE_FOPS 7
#endif
#ifdef CONFIG_ARCH_SUPPORTS_PMD_PFNMAP
	{ .name = "pfnw-huge-pfnmap", .fops = &badmod_fops[BADMOD_HUGE_FOPS] },
	/* Last: registered only when pud_bar_pfn is given. */
	{ .name = "pfnw-huge-pud", .fops = &badmod_fops[BADMOD_HUGE_FOPS + 1] },
#endif
};

static unsigned int registered;

static void badmod_unregister(void)
{
	while (registered > 0)
		misc_deregister(&badmod_devs[--registered]);
}

/* The devices need pfns without struct pages: vmf_insert_mixed() would
 * refcount real RAM, and the remaps would map it. */
static bool has_no_memmap(unsigned long base, unsigned long pages)
{
	unsigned long i;

	for (i = 0; i < pages; i++)
		if (pfn_valid(base + i))
			return false;
	return true;
}

static int __init badmod_init(void)
{
	int err;

	if (!bar_pfn || !bar_pages || bar_pfn + bar_pages < bar_pfn) {
		pr_err("pfnwatch_badmod: bar_pfn=0x%lx bar_pages=%lu: give a BAR's first pfn and size\n",
		       bar_pfn, bar_pages);
		return -EINVAL;
	}
	if (!has_no_memmap(bar_pfn, bar_pages)) {
		pr_err("pfnwatch_badmod: bar_pfn=0x%lx..+%lu has struct pages; refusing\n",
		       bar_pfn, bar_pages);
		return -EINVAL;
	}
	if (pud_bar_pfn && (pud_bar_pages < (PUD_SIZE >> PAGE_SHIFT) ||
			    pud_bar_pfn % (PUD_SIZE >> PAGE_SHIFT) ||
			    pud_bar_pfn + pud_bar_pages < pud_bar_pfn ||
			    !has_no_memmap(pud_bar_pfn, pud_bar_pages))) {
		pr_err("pfnwatch_badmod: pud_bar_pfn=0x%lx pud_bar_pages=%lu: want a 1 GiB-aligned BAR of 1 GiB or more without struct pages\n",
		       pud_bar_pfn, pud_bar_pages);
		return -EINVAL;
	}
	for (registered = 0; registered < ARRAY_SIZE(badmod_devs);) {
		struct miscdevice *dev = &badmod_devs[registered];

		/* The pud device is last; without its BAR it is left out. */
		if (!pud_bar_pfn && !strcmp(dev->name, "pfnw-huge-pud"))
			break;

		dev->minor = MISC_DYNAMIC_MINOR;
		dev->mode = 0600;
		err = misc_register(dev);
		if (err) {
			pr_err("pfnwatch_badmod: registering /dev/%s: %d\n",
			       dev->name, err);
			badmod_unregister();
			return err;
		}
		registered++;
		if (devices[0])
			strlcat(devices, " ", sizeof(devices));
		strlcat(devices, dev->name, sizeof(devices));
	}
	pr_info("pfnwatch_badmod: bar_pfn 0x%lx, %lu pages; devices: %s\n",
		bar_pfn, bar_pages, devices);
	return 0;
}

static void __exit badmod_exit(void)
{
	badmod_unregister();
}

module_init(badmod_init);
module_exit(badmod_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pfnwatch test module: drivers that break the VM_PFNMAP/VM_MIXEDMAP rules");
