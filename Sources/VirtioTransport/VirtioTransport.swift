// The endpoints of the vhost-user transport: the device API (VirtioDevice, RequestBatch, the
// queue processor), the back-end that serves a device to front-ends, and the front-end.
