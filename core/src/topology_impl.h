/* topology_impl.h: internals of topology.c that its unit test reaches. Internal to libmpx.
 * Thread-safety: pure functions of their inputs (they only read the files they are given). */
#ifndef MPX_TOPOLOGY_IMPL_H
#define MPX_TOPOLOGY_IMPL_H

/* The tightest cgroup CPU quota on this process, rounded up to whole CPUs, or 0 if none.
 * `cgroup_file` and `mountinfo_file` are normally /proc/self/cgroup and /proc/self/mountinfo.
 * Reads cgroup v2 cpu.max and v1 cpu.cfs_quota_us / cpu.cfs_period_us in the process's cgroup and
 * every ancestor up to the mount point, since a parent's quota also limits its children.
 * MPX_EINVAL for a NULL path; unreadable or missing files just mean no quota. */
int mpx__cgroup_cpu_quota(const char *cgroup_file, const char *mountinfo_file);

#endif
