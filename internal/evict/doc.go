// Package evict bounds the connected registry's cache (registry.cache.maxSize): on the schedule of the chart's
// cache-eviction CronJob, it removes the images pulled least recently, never one that pre-sync keeps, until the
// cache fits again.
//
// It works through the registry API, not a file system, so it works on every storage driver Distribution has
// (the filesystem of a PVC, Azure Blob, S3). The client-facing registry is a read-only pull-through cache that
// refuses DELETE. The CronJob's pod therefore runs a second Distribution on its own loopback, on the same storage,
// without proxy mode and with storage.delete.enabled: only this Job reaches it. Through it, Inventory walks the
// catalog, the tags and every manifest they lead to; Plan picks what to evict; Delete deletes those manifests
// (which also untags them). Then the pod's last container runs Distribution's own garbage collection, whose mark
// phase keeps every blob a remaining manifest names (a layer shared with a kept image survives) and whose sweep
// frees the rest.
//
// Pull times come from the registry itself: its notifications (one event per manifest pulled, cached or not)
// go to the parent gate beside it on the pod's loopback, whose Recorder keeps the last pull of each repo@digest
// and repo:tag and writes them to a ConfigMap (Pulls, ConfigMapPullStore). A manifest with no recorded pull
// counts as pulled when recording began.
package evict
