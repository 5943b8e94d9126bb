//! What the correct-driver scenarios (drivers.rs) must make pfnwatch
//! report, per kernel, derived from Debian's 6.1.176, 6.12.117 and 7.2.12
//! sources like expect.rs. They break no rule: every expectation here is
//! the correct behaviour, including where today's pfnwatch is known to
//! be wrong; those rows and rules say `// needs: <change on main>`.

use crate::expect::{
    ALL, ARM_K6_12, COPY, DEV, DEV_COW, EFAULT, ENOENT, Expect, FOLLOW_DEV, K6, K6_1, K6_12_UP,
    K7_2, PREPARE_COW, PREPARE_SHARED, REMAP, X86, X86_K6_12, X86_K7_2, alert, lifetime, row,
};
use pfnwatch::rules::RuleId::{R1, R4};
use pfnwatch::rules::Severity::Info;
use pfnwatch_common::Hook::{
    FolioWalkStart, FollowPfnmapStart, FollowPhys, RemapPfnRange, RemapPfnRangeComplete,
    VmInsertPage, VmInsertPages, VmNormalPage, VmfInsertPfnProt,
};
use pfnwatch_common::class::{COW, MIXEDMAP, NO_PAGE, PARTIAL, PFNMAP, SPECIAL};

/// A special pte whose pfn has nothing to do with vm_pgoff: inserted at
/// fault time, or remapped into a shared vma whose vm_pgoff is an index.
const SPEC: u16 = PFNMAP | SPECIAL | NO_PAGE;
/// A refcounted page in a VM_MIXEDMAP vma, which vm_normal_page returns.
const MIX: u16 = MIXEDMAP;

pub const DRM_DUMB_BUFFER: Expect = Expect {
    kernels: ALL,
    rows: &[
        // 4 pages (1024 x 4 XRGB8888) of /dev/dri/card0, MAP_SHARED|PROT_READ;
        // read from page 0 up, fork, munmap.
        row(
            K6,
            VmfInsertPfnProt,
            PFNMAP,
            4,
            "the read of page 0: ttm_bo_vm_fault -> ttm_bo_vm_fault_reserved prefaults up to \
            TTM_BO_VM_NUM_PREFAULT pages, so this one fault inserts all four \
            (vmf_insert_pfn_prot into the VM_PFNMAP|VM_IO vma of ttm_bo_mmap_obj); the pfns \
            are the BO's system-memory pages (TTM_PL_SYSTEM), vm_pgoff DRM's fake offset",
        ),
        row(
            K7_2,
            VmfInsertPfnProt,
            PFNMAP,
            4,
            "bochs is GEM shmem in 7.x: each page's first read, drm_gem_shmem_fault -> \
            try_insert_pfn -> vmf_insert_pfn -> vmf_insert_pfn_prot (no prefault) into the \
            VM_PFNMAP vma of drm_gem_shmem_mmap",
        ),
        row(
            ALL,
            VmNormalPage,
            SPEC,
            12,
            "fork copies the ptes (copy_present_pte(s): a VM_PFNMAP vma is always copied), \
            then the child's exit and munmap zap them, 4 each; insert_pfn made every pte \
            special; no VM_PAT (no whole-vma remap), so no PAT lookup",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    // The card's file_operations are bochs's (DEFINE_DRM_GEM_FOPS, .owner =
    // THIS_MODULE): the module names the driver, not /proc/devices' "drm".
    driver: Some("bochs"),
    shared_rows: &[&lifetime(ALL, PFNMAP, 1, 1)],
};

pub const UIO_BAR: Expect = Expect {
    kernels: ALL,
    rows: &[
        // 4 pages of edu's BAR 0 through /dev/uio0 map0, MAP_SHARED; read
        // (no faults: all mapped at mmap), fork, munmap.
        row(
            ALL,
            RemapPfnRange,
            PFNMAP,
            1,
            "uio_mmap -> uio_mmap_physical -> remap_pfn_range over the whole vma (7.2 too: \
            uio_pci_generic has no mmap_prepare); shared, so vm_pgoff stays the map index 0 \
            and the BAR's pfn is off the rule",
        ),
        row(
            ALL,
            VmNormalPage,
            SPEC,
            12,
            "fork (copy_present_pte), the child's exit and munmap (zap), 4 each",
        ),
        row(
            K6_1,
            VmNormalPage,
            SPEC,
            3,
            "the whole-vma remap set VM_PAT: track_pfn_copy at fork, untrack_pfn at the \
            child's exit and at munmap look page 0 up (get_pat_info -> follow_phys -> \
            vm_normal_folio)",
        ),
        row(
            K6_1,
            FollowPhys,
            PFNMAP | SPECIAL,
            3,
            "PAT at fork, child exit and munmap: follow_phys of page 0",
        ),
        row(
            X86_K6_12,
            FollowPfnmapStart,
            PFNMAP | SPECIAL,
            3,
            "PAT at fork, child exit and munmap: get_pat_info -> follow_phys -> \
            follow_pfnmap_start (7.2 has no PAT lookups)",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("uio"),
    shared_rows: &[&lifetime(ALL, PFNMAP, 1, 1)],
};

pub const PERF_RING: Expect = Expect {
    kernels: ALL,
    rows: &[
        // 1 + 8 pages of a software dummy event's ring buffer, MAP_SHARED;
        // read, write data_tail (page 0), fork, munmap. 6.x: nothing at all:
        // perf_mmap_fault hands out refcounted pages (vmf->page) in a vma that
        // is neither VM_PFNMAP nor VM_MIXEDMAP.
        row(
            K7_2,
            RemapPfnRange,
            PFNMAP | PARTIAL,
            9,
            "since 6.15 perf_mmap -> map_range maps the buffer at mmap time, one \
            remap_pfn_range per page: each covers one page of the 9-page vma (partial, not \
            COW), its pfn an order-0 buffer page",
        ),
        row(
            K7_2,
            VmNormalPage,
            SPEC,
            2,
            "the write to data_tail: map_range mapped read-only, so do_wp_page looks the \
            special pte up; wp_pfn_shared cannot call ->pfn_mkwrite under the per-VMA lock \
            (vmf_can_call_fault: no ->map_pages), so the fault retries under mmap_lock and \
            looks it up again",
        ),
        row(
            K7_2,
            VmNormalPage,
            SPEC,
            9,
            "munmap: zap, one per page; the vma is VM_DONTCOPY, so the child has none",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    // An anonymous inode: no device to name.
    driver: None,
    shared_rows: &[&lifetime(K7_2, PFNMAP, 1, 0)],
};

pub const IO_URING: Expect = Expect {
    kernels: ALL,
    rows: &[
        // A ring of 8 entries: SQ ring, CQ ring and SQEs, one page each,
        // mapped at their offsets; read, fork (the child reads), munmap.
        row(
            ALL,
            VmNormalPage,
            MIX,
            9,
            "io_uring_mmap puts the ring's kernel pages in with vm_insert_pages (6.1: \
            io_uring_mmap_pages, Debian's backport; 7.2: io_region_mmap), which makes each \
            one-page vma VM_MIXEDMAP with a refcounted pte; fork copies them (MIXEDMAP is \
            always copied), the child's exit and munmap zap them: vm_normal_page returns the \
            page, 3 each",
        ),
        row(
            ALL,
            VmInsertPages,
            MIX,
            3,
            "one vm_insert_pages call per region's mmap, one page each",
        ),
    ],
    // R4 (info): a VM_MIXEDMAP populated, once per vma; no module to name.
    rules: &[(ALL, &[(R4, 3)])],
    alerts: &[(ALL, &[alert(R4, Info, 3, None)])],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: None,
    shared_rows: &[&lifetime(ALL, MIX, 3, 1)],
};

pub const BPF_RINGBUF: Expect = Expect {
    kernels: ALL,
    rows: &[
        // A 4 KiB BPF ring buffer of this process: the consumer page (RW)
        // and the producer page + the data page twice (RO); read, write the
        // consumer position, fork (the child reads), munmap both.
        row(
            ALL,
            VmNormalPage,
            MIX,
            12,
            "bpf_map_mmap -> ringbuf_map_mmap_kern -> remap_vmalloc_range -> vm_insert_page \
            per page: VM_MIXEDMAP vmas of refcounted vmalloc pages, 1 + 3 ptes (order-0, no \
            batching); fork, the child's exit and munmap look each up, 4 each",
        ),
        row(
            ALL,
            VmInsertPage,
            MIX,
            4,
            "remap_vmalloc_range_partial: one vm_insert_page per page, 1 consumer + 3 producer",
        ),
    ],
    // R4 (info) per vm_insert_page, alerted once per vma: the consumer's
    // and the producer's.
    rules: &[(ALL, &[(R4, 4)])],
    alerts: &[(ALL, &[alert(R4, Info, 2, None)])],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: None,
    shared_rows: &[&lifetime(ALL, MIX, 2, 1)],
};

pub const DAX_PRIVATE: Expect = Expect {
    // The pmem is x86's legacy region (memmap=, nd_e820): arm64 has none.
    kernels: X86,
    // needs: insert hooks count only PFNMAP/MIXEDMAP vmas. The vma is
    // neither (ext4_file_mmap sets only VM_HUGEPAGE), so nothing may count:
    // - 6.1, 6.12: each page's first read, ext4_dax_fault -> dax_iomap_pte_fault
    //   -> dax_fault_iter -> vmf_insert_mixed (a devmap pte, allowed by
    //   vm_mixed_ok's pfn_t_devmap); today that counts (VmfInsertMixed,
    //   cow) x4 and fires R2 x4, a false warning;
    // - 7.2: vmf_insert_page_mkwrite (refcounted fsdax pages), not hooked;
    // - the COW write (do_wp_page), fork, exit and munmap: the lookup hooks
    //   filter the vma.
    rows: &[],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    // A file on a file system: no device node.
    driver: None,
    // vmf_insert_page_mkwrite (7.2) inserts into a vma that is neither
    // PFNMAP nor MIXEDMAP: the coming filter counts none.
    shared_rows: &[],
};

pub const VVAR_MOVE_PAGES: Expect = Expect {
    kernels: ALL,
    rows: &[
        // The process's whole life on [vvar] (4 pages) and x86 7.x's
        // [vvar_vclock] (2): its first clock read, move_pages status of every
        // page, a move of every page (vma_migratable() refuses
        // VM_IO|VM_PFNMAP: no lookup), exit. Only the time page (0) is ever
        // present under TCG. arm64's [vvar] has 4 pages too: include/vdso/
        // datapage.h's enum vdso_pages gives the arch data one page even
        // without ARCH_HAS_VDSO_ARCH_DATA (struct vdso_arch_data { char }).
        row(
            K6,
            VmfInsertPfnProt,
            PFNMAP,
            1,
            "the first vDSO clock read: vvar_fault -> vmf_insert_pfn -> vmf_insert_pfn_prot \
            of the vvar page into the VM_PFNMAP|VM_IO [vvar]",
        ),
        row(
            K6,
            VmNormalPage,
            SPEC,
            1,
            "move_pages status of page 0: 6.1 do_pages_stat_array -> follow_page -> \
            follow_page_pte, 6.12 folio_walk_start: the special pte gives no page",
        ),
        row(K6, VmNormalPage, SPEC, 1, "exit zaps the vvar pte"),
        row(
            X86_K6_12,
            FolioWalkStart,
            PFNMAP | NO_PAGE,
            4,
            "do_pages_stat_array -> folio_walk_start for each [vvar] page: no folio (the \
            special pte of page 0, nothing at pages 1-3)",
        ),
        row(
            ARM_K6_12,
            FolioWalkStart,
            PFNMAP | NO_PAGE,
            2,
            "the same for arm64's 2-page [vvar] (arch/arm64/include/asm/vdso.h \
            __VVAR_PAGES 2: the data page and the timens page; VM_PFNMAP in vdso.c)",
        ),
        row(
            K7_2,
            VmNormalPage,
            MIX,
            2,
            "lib/vdso/datastore.c: [vvar] is VM_IO|VM_MIXEDMAP and vvar_fault hands out the \
            refcounted time page; folio_walk_start (move_pages status) and exit look it up",
        ),
        row(
            K7_2,
            FolioWalkStart,
            MIX,
            1,
            "move_pages status of [vvar] page 0: folio_walk_start returns the time page's \
            folio, a normal page of a VM_MIXEDMAP vma (legal; status: its node)",
        ),
        row(
            K7_2,
            FolioWalkStart,
            MIXEDMAP | NO_PAGE,
            3,
            "move_pages status of [vvar] pages 1-3 (timens, rng, arch data): not present",
        ),
        row(
            X86_K7_2,
            FolioWalkStart,
            PFNMAP | NO_PAGE,
            2,
            "move_pages status of [vvar_vclock]'s 2 pages (VM_PFNMAP; pvclock and hvclock \
            exist only under KVM or Hyper-V): not present. arch/x86/entry/vdso/vma.c maps \
            it; arm64's vdso.c maps no such vma",
        ),
    ],
    // needs: R5 VM_PFNMAP only. Today R5 (critical) fires once on 7.2: its
    // `PfnmapOrIo` takes [vvar]'s VM_IO for a pfn map.
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[
        // Status of [vvar] (then [vvar_vclock]), then the move of the same.
        // 6.1's follow_page(FOLL_DUMP) gives -EFAULT for the special pte and
        // -ENOENT where nothing is mapped ([vvar] has a ->fault); 6.12's
        // folio_walk_start no folio; 7.2 the time page's node. The move:
        // vma_migratable() refuses VM_IO|VM_PFNMAP.
        (
            K6_1,
            Some(&[
                EFAULT, ENOENT, ENOENT, ENOENT, EFAULT, EFAULT, EFAULT, EFAULT,
            ]),
        ),
        (
            X86_K6_12,
            Some(&[
                ENOENT, ENOENT, ENOENT, ENOENT, EFAULT, EFAULT, EFAULT, EFAULT,
            ]),
        ),
        (ARM_K6_12, Some(&[ENOENT, ENOENT, EFAULT, EFAULT])),
        (
            X86_K7_2,
            Some(&[
                0, ENOENT, ENOENT, ENOENT, ENOENT, ENOENT, EFAULT, EFAULT, EFAULT, EFAULT, EFAULT,
                EFAULT,
            ]),
        ),
        // arm64: [vvar] alone.
        (
            K7_2,
            Some(&[0, ENOENT, ENOENT, ENOENT, EFAULT, EFAULT, EFAULT, EFAULT]),
        ),
    ],
    remap_caller: &[],
    driver: None,
    shared_rows: &[],
};

pub const DEVMEM_PROTNONE: Expect = Expect {
    kernels: ALL,
    rows: &[
        // 4 pages of /dev/mem at 0xf0000, MAP_PRIVATE+PROT_WRITE; read, write
        // page 1 (COW), mprotect(PROT_NONE), munmap. pte_modify keeps the
        // special bit and inverts the pfn bits of a PROT_NONE pte (L1TF);
        // the kernel's pte_pfn() inverts them back, so its lookups see the
        // device pfns on the rule.
        row(
            K6,
            RemapPfnRange,
            COW | REMAP,
            1,
            "mmap_mem -> remap_pfn_range",
        ),
        row(
            K7_2,
            RemapPfnRangeComplete,
            COW | REMAP,
            1,
            "mmap_mem_prepare -> remap_pfn_range_complete",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV_COW,
            1,
            "the write to page 1: do_wp_page finds the special device pte",
        ),
        row(
            K7_2,
            VmNormalPage,
            DEV_COW,
            3,
            "mprotect: 7.x change_pte_range looks every present pte up (on the old pte, not \
            yet PROT_NONE): pages 0, 2, 3 (6.x only for prot_numa or a writable new prot)",
        ),
        row(
            K7_2,
            VmNormalPage,
            COPY,
            1,
            "mprotect: page 1, the COW copy",
        ),
        // needs: PROT_NONE decode (L1TF inversion).
        row(
            ALL,
            VmNormalPage,
            DEV_COW,
            3,
            "munmap: zap_pte_range on the PROT_NONE ptes of pages 0, 2, 3 (pte_present: \
            _PAGE_PROTNONE); their pfns are inverted in the entry",
        ),
        // needs: PROT_NONE decode (L1TF inversion).
        row(
            K6_1,
            VmNormalPage,
            DEV_COW,
            1,
            "munmap: PAT's follow_phys lookup of page 0, PROT_NONE by then",
        ),
        row(
            ALL,
            VmNormalPage,
            COPY,
            1,
            "munmap: page 1, the COW copy (an anonymous page: off the rule either way)",
        ),
        row(
            K6_1,
            FollowPhys,
            COW | FOLLOW_DEV,
            1,
            "munmap: PAT's follow_phys of page 0 (PROT_NONE; the kernel's pte_pfn un-inverts)",
        ),
        row(
            X86_K6_12,
            FollowPfnmapStart,
            COW | FOLLOW_DEV,
            1,
            "munmap: PAT's get_pat_info -> follow_pfnmap_start of page 0",
        ),
    ],
    // needs: PROT_NONE decode. Today the inverted pfns miss the rule: R8
    // (warning) x4 on 6.1 (PAT + zap), x3 on 6.12 and 7.2.
    rules: &[(ALL, &[(R1, 1)])],
    alerts: &[(ALL, &[alert(R1, Info, 1, None)])],
    errors: &[],
    // needs: PROT_NONE decode.
    pfn_rule_holds: true,
    move_pages: &[],
    remap_caller: &[(K7_2, "mmap_action_complete"), (K6, "mmap_mem")],
    driver: Some("mem"),
    shared_rows: &[&lifetime(ALL, PFNMAP | COW, 1, 0), PREPARE_COW],
};

pub const PROC_MEM: Expect = Expect {
    kernels: ALL,
    rows: &[
        // 4 pages of /dev/mem at 0xf0000, MAP_SHARED; one 16 KiB pread of
        // /proc/self/mem there, munmap. mem_rw -> access_remote_vm: GUP stops
        // at check_vma_flags (VM_IO|VM_PFNMAP: -EFAULT) before any lookup;
        // then vm_ops->access = generic_access_phys, which walks the page
        // table itself (6.1 follow_pte, 6.12+ follow_pfnmap_start: new hooks).
        row(K6, RemapPfnRange, REMAP, 1, "mmap_mem -> remap_pfn_range"),
        row(
            K7_2,
            RemapPfnRangeComplete,
            REMAP,
            1,
            "mmap_mem_prepare -> remap_pfn_range_complete",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV,
            4,
            "munmap: zap_pte_range, one per pte",
        ),
        row(
            K6_1,
            VmNormalPage,
            DEV,
            1,
            "munmap: PAT's follow_phys lookup",
        ),
        row(
            K6_1,
            FollowPhys,
            FOLLOW_DEV,
            1,
            "munmap: PAT's follow_phys of page 0 (6.1's generic_access_phys uses follow_pte, \
            which has no vma and is not hooked)",
        ),
        row(
            K6_12_UP,
            FollowPfnmapStart,
            FOLLOW_DEV,
            8,
            "generic_access_phys looks each page up twice (before and after ioremap_prot); \
            mem_rw reads page by page: 4 x 2",
        ),
        row(
            X86_K6_12,
            FollowPfnmapStart,
            FOLLOW_DEV,
            1,
            "munmap: PAT's get_pat_info -> follow_pfnmap_start",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[(K7_2, "mmap_action_complete"), (K6, "mmap_mem")],
    driver: Some("mem"),
    shared_rows: &[&lifetime(ALL, PFNMAP, 1, 0), PREPARE_SHARED],
};
