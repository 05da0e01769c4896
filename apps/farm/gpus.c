/* gpus.c: which GPUs this node has, for mpx-farm to split between its slots.
 *
 * When --gpus is not given and CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES are not already set,
 * the coordinator asks hwloc for the PCI display controllers (class 0x03xx) of NVIDIA (vendor
 * 0x10de) and AMD (0x1002) and numbers them 0..n-1 in PCI order, which is the order CUDA
 * (CUDA_DEVICE_ORDER=PCI_BUS_ID) and ROCm enumerate them. The list goes to every task's
 * CUDA_VISIBLE_DEVICES and ROCR_VISIBLE_DEVICES, split between the slots (run.c). Worker ranks
 * on other nodes are assumed to have the same GPUs (a homogeneous allocation). hwloc is used
 * directly here because mpx's topology API has no I/O devices; a topology with I/O discovery is
 * loaded once, on the coordinator, and freed at once. Single-threaded (startup). */
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm.h"

int farm_gpus_detect(char *out, size_t len) {
  out[0] = '\0';
  const char *cv = getenv("CUDA_VISIBLE_DEVICES"), *rv = getenv("ROCR_VISIBLE_DEVICES");
  if ((cv && *cv) || (rv && *rv)) return 0; /* the launcher chose: leave it alone */
  hwloc_topology_t t;
  if (hwloc_topology_init(&t) < 0) return 0;
  hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  /* PCI from Linux sysfs, not libpciaccess (which leaks at exit and reads config space) */
  hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
  int n = 0;
  if (hwloc_topology_load(t) == 0) {
    for (hwloc_obj_t o = NULL; (o = hwloc_get_next_pcidev(t, o)) != NULL;) {
      unsigned cls = o->attr->pcidev.class_id >> 8, vendor = o->attr->pcidev.vendor_id;
      if (cls != 0x03 || (vendor != 0x10de && vendor != 0x1002)) continue;
      size_t used = strlen(out);
      snprintf(out + used, len - used, "%s%d", n ? "," : "", n);
      n++;
    }
  }
  hwloc_topology_destroy(t);
  return n;
}
