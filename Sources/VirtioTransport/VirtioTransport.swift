// The cross-process transport: shared memory, doorbells, the vhost-user control plane.
