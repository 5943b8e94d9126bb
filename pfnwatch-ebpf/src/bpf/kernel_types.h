/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * The few kernel types pfnwatch reads, declared the CO-RE way: only the
 * fields used, in any order, marked preserve_access_index so libbpf/aya
 * relocate every access against the running kernel's BTF by name. Types
 * the kernel wraps in anonymous unions (vm_flags since 6.3, f_path since
 * 6.13) are matched through them, so one object serves 6.1 through 7.x.
 */
#ifndef PFNWATCH_KERNEL_TYPES_H
#define PFNWATCH_KERNEL_TYPES_H

#include <linux/types.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;
typedef _Bool bool;
#define true 1
#define false 0

#define __kc __attribute__((preserve_access_index))

typedef struct { unsigned long pte; } __kc pte_t;
typedef struct { unsigned long pmd; } __kc pmd_t;

/* 6.1 keeps vma and address at the top; 6.12+ in an anonymous const struct.
 * Matched by name either way. */
struct vm_fault {
	struct vm_area_struct *vma;
	unsigned long address;
} __kc;

struct qstr {
	const unsigned char *name;
} __kc;

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __kc;

struct path {
	struct dentry *dentry;
} __kc;

struct super_block {
	u32 s_dev;
} __kc;

struct inode {
	unsigned long i_ino;
	u32 i_rdev;
	struct super_block *i_sb;
} __kc;

struct module {
	char name[56]; /* MODULE_NAME_LEN */
} __kc;

struct file;
struct mm_struct;
struct vm_area_struct;

struct kernfs_node {
	__u64 id;
} __kc;

struct cgroup {
	struct kernfs_node *kn;
} __kc;

struct css_set {
	struct cgroup *dfl_cgrp;
} __kc;

/* The pid's namespace depth: 0 in the initial pid namespace. */
struct pid {
	unsigned int level;
} __kc;

struct task_struct {
	struct mm_struct *mm;
	int pid;
	int tgid;
	char comm[16];
	struct css_set *cgroups;
	struct pid *thread_pid;
} __kc;

/* An iter/task_vma program's context: one vma of one task per call. */
struct bpf_iter_meta;
struct bpf_iter__task_vma {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	struct vm_area_struct *vma;
} __kc;
struct vm_area_desc;

struct file_operations {
	struct module *owner;
	int (*mmap)(struct file *, struct vm_area_struct *);
	int (*mmap_prepare)(struct vm_area_desc *); /* 7.x */
} __kc;

struct file {
	struct path f_path;
	struct inode *f_inode;
	const struct file_operations *f_op;
} __kc;

struct vm_operations_struct {
	unsigned int (*fault)(struct vm_fault *vmf);
	unsigned int (*huge_fault)(struct vm_fault *vmf, unsigned int order);
} __kc;

/* 7.x: the flags word became a bitmap beside the old name. */
typedef struct { unsigned long __vma_flags[1]; } __kc vma_flags_t;

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	unsigned long vm_flags;
	vma_flags_t flags;
	unsigned long vm_pgoff;
	struct file *vm_file;
	const struct vm_operations_struct *vm_ops;
	struct mm_struct *vm_mm;
} __kc;

struct address_space;

struct page {
	struct address_space *mapping;
} __kc;

struct folio {
	struct address_space *mapping;
} __kc;

enum folio_walk_level {
	FW_LEVEL_PTE = 0,
	FW_LEVEL_PMD = 1,
	FW_LEVEL_PUD = 2,
};

struct folio_walk {
	struct page *page;
	enum folio_walk_level level;
	pte_t pte; /* in a union with pmd and pud: the raw entry */
} __kc;

/* 7.x mmap_prepare: what remap_pfn_range_complete() maps. */
struct mmap_action {
	struct {
		unsigned long start;
		unsigned long start_pfn;
		unsigned long size;
	} remap;
} __kc;

/* 7.x mmap_prepare: the vma-to-be a converted driver describes. */
struct vm_area_desc {
	struct file *file;
	unsigned long start;
	unsigned long end;
	unsigned long pgoff;
	vma_flags_t vma_flags;
	struct mmap_action action;
} __kc;

/* 6.12+: follow_pfnmap_start()'s arguments, inputs and outputs. */
struct follow_pfnmap_args {
	struct vm_area_struct *vma;
	unsigned long address;
	unsigned long pfn;
	bool special;
} __kc;

#endif /* PFNWATCH_KERNEL_TYPES_H */
